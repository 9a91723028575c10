"""The diffusers-longvid web app, as a Hugging Face Space runs it (`python app.py`); the same as `longvid app`.

A Space with the Gradio SDK needs this file and a requirements.txt holding `diffusers-longvid[app]`. The model the
page starts with is `LONGVID_APP_MODEL` (default: the built-in `toy` preset, which runs on a CPU Space).
"""

import os

from diffusers_longvid.app import launch_app


if __name__ == "__main__":
    launch_app(
        model=os.environ.get("LONGVID_APP_MODEL", "toy"),
        host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
