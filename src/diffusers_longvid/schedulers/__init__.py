from .scheduling_trflow import TRFlowScheduler, TRFlowStepEstimate, trflow_weights


__all__ = ["TRFlowScheduler", "TRFlowStepEstimate", "trflow_weights"]
