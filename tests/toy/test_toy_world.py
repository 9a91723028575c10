"""The procedural toy world: scripts, prompts and the renderer's ground truth."""

import json
import re

import numpy as np
import pytest

from diffusers_longvid.toy import (
    COLORS,
    clip_frame_ranges,
    describe_script,
    is_reentry,
    load_script,
    random_script,
    render_script,
    render_script_clips,
    save_script,
    validate_script,
)


def _script():
    """A red circle moves right, leaves the frame, stays out one clip and comes back; a blue square bounces."""
    red = {"shape": "circle", "color": "red"}
    blue = {"shape": "square", "color": "blue"}
    return [
        {
            "background": "navy",
            "objects": [
                {**red, "motion": "moves_right", "position": [0.3, 0.5]},
                {**blue, "motion": "bounces", "position": [0.7, 0.3], "heading": 45},
            ],
        },
        {"background": "navy", "objects": [{**red, "motion": "exits_right"}, {**blue, "motion": "stays"}]},
        {"background": "navy", "objects": [{**red, "visible": False}, {**blue, "motion": "grows"}]},
        {
            "background": "beige",
            "texture": "stripes",
            "objects": [{**red, "motion": "enters_left"}, {**blue, "motion": "moves_left"}],
        },
    ]


def test_render_shapes_and_determinism():
    a = render_script(_script(), fps=8, size=32, clip_seconds=1.0, seed=3, return_masks=True)
    b = render_script(_script(), fps=8, size=32, clip_seconds=1.0, seed=3)
    assert a.frames.shape == (32, 32, 32, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)
    assert a.clip_ranges == [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert a.frame_clip.tolist() == sum([[n] * 8 for n in range(4)], [])
    assert a.visible.shape == a.pixel_count.shape == (32, 2) and a.bbox.shape == (32, 2, 4)
    assert a.masks.shape == (32, 2, 32, 32)
    assert np.array_equal(a.masks.sum(axis=(2, 3)), a.pixel_count)
    json.dumps(a.metadata())  # JSON-serialisable


def test_random_script_determinism_and_reentry():
    s1, s2 = random_script(30, seed=7), random_script(30, seed=7)
    assert s1 == s2 and s1 != random_script(30, seed=8)
    assert len(s1) == 30 and all(c["prompt"] for c in s1)
    shapes = [o["shape"] for o in s1[0]["objects"]]
    assert len(set(shapes)) == len(shapes)  # re-entry prompts name the shape only, so shapes are unique
    for seed in range(5):  # every random script of >= 3 clips has a re-entry
        assert any(any(row) for row in is_reentry(random_script(3, seed=seed)))
    video = render_script(s1, size=32, fps=4)
    assert np.array_equal(video.frames, render_script(s1, size=32, fps=4, seed=123).frames)  # script pins the start


def test_reentry_prompt_omits_colour():
    prompts = describe_script(_script())
    assert prompts[0] == "A red circle moves to the right and a blue square bounces around on a navy background."
    assert prompts[1].startswith("The red circle leaves the frame to the right and the blue square stays still")
    assert "red" not in prompts[2] and "circle" not in prompts[2]  # out of frame: not mentioned
    assert prompts[3].startswith("The circle comes back from the left")
    assert "red" not in prompts[3]
    assert prompts[3].endswith("as the background changes to a beige background with stripes.")
    assert is_reentry(_script())[3] == [True, False]
    # A first entry is not a re-entry and names the colour.
    first = [
        {"background": "gray", "objects": [{"shape": "triangle", "color": "green", "visible": False}]},
        {"background": "gray", "objects": [{"shape": "triangle", "color": "green", "motion": "enters_right"}]},
    ]
    assert describe_script(first) == [
        "An empty gray background.",
        "A green triangle enters from the right on a gray background.",
    ]


def test_colours_visibility_and_continuity():
    video = render_script(_script(), fps=16, size=64, clip_seconds=1.0, return_masks=True)
    red, blue = np.asarray(COLORS["red"]), np.asarray(COLORS["blue"])
    for t in range(video.num_frames):
        for i, rgb in enumerate((red, blue)):
            if video.visible[t, i] and video.pixel_count[t, i] > 20:
                # Pixels fully inside the object have exactly its colour (anti-aliasing only touches the edge).
                assert (np.abs(video.frames[t][video.masks[t, i]].astype(int) - rgb).max(axis=1) == 0).mean() > 0.5
    clip = np.asarray(video.frame_clip)
    assert video.visible[clip == 0, 0].all() and not video.visible[clip == 2, 0].any()
    assert not video.visible[clip == 1, 0][-1] and video.visible[clip == 3, 0][-1]
    assert video.visible[:, 1].all()
    # One continuous shot: centres move by a small step between consecutive frames, across clip boundaries too,
    # except for the object while it is out of frame.
    step = np.abs(np.diff(video.center, axis=0)).max(axis=2)
    both = video.visible[1:] & video.visible[:-1]
    assert step[both].max() < 0.06
    # The re-entry starts just outside the left edge at the height where the object left.
    first_back = video.clip_ranges[3][0]
    assert video.center[first_back, 0, 0] < 0.05
    assert video.center[first_back, 0, 1] == pytest.approx(video.center[video.clip_ranges[1][1] - 1, 0, 1])
    # The background of the last clip cross-fades to beige and then is beige (stripes are the only other colour).
    assert np.allclose(video.background_rgb[-1], COLORS["beige"])
    corner = video.frames[-1, 0, 0].astype(int)
    assert np.abs(corner - np.asarray(COLORS["beige"])).max() <= 1 or corner.mean() < np.mean(COLORS["beige"])


def test_clip_aligned_render_matches_pipeline_arithmetic():
    F, k = 9, 5
    assert clip_frame_ranges(3, F, k) == [(0, 9), (4, 13), (8, 17)]
    video = render_script_clips(_script(), num_frames=F, num_condition_frames=k, size=16)
    assert video.num_frames == F + (4 - 1) * (F - k)
    assert video.clip_ranges == clip_frame_ranges(4, F, k)
    # Clip n's first k frames are clip n - 1's last k frames.
    assert np.array_equal(video.clip_frames(1)[:k], video.clip_frames(0)[-k:])
    # Clip 0 covers F frames of script clip 0; later clips F - k new frames each.
    assert video.frame_clip.tolist() == [0] * F + [1] * (F - k) + [2] * (F - k) + [3] * (F - k)
    # Clip-relative motion: the state at each script-clip boundary does not depend on the sampling.
    dense = render_script(_script(), fps=20, size=16, clip_seconds=1.0)
    for n in range(4):
        np.testing.assert_allclose(
            video.center[video.frame_clip == n][-1], dense.center[dense.frame_clip == n][-1], atol=1e-6
        )


def test_script_roundtrip_and_prompts(tmp_path):
    script = random_script(4, seed=1)
    path = tmp_path / "s.json"
    save_script(script, path)
    assert load_script(path) == validate_script(script)
    assert [c["prompt"] for c in load_script(path)] == describe_script(script)


@pytest.mark.parametrize(
    "script, message",
    [
        ([], "at least one clip"),
        ([{"background": "mauve", "objects": []}], "`script[0].background` must be one of"),
        ([{"background": "gray", "texture": "fur"}], "`script[0].texture` must be one of"),
        ([{"background": "gray", "objects": [{"shape": "star", "color": "red"}]}], "`script[0].objects[0].shape`"),
        (
            [{"background": "gray", "objects": [{"shape": "circle", "color": "red", "motion": "flies"}]}],
            "`script[0].objects[0].motion` must be one of",
        ),
        (
            [
                {"background": "gray", "objects": [{"shape": "circle", "color": "red"}]},
                {"background": "gray", "objects": [{"shape": "circle", "color": "blue"}]},
            ],
            "keeps its shape and colour",
        ),
        (
            [
                {"background": "gray", "objects": [{"shape": "circle", "color": "red"}]},
                {"background": "gray", "objects": []},
            ],
            "same objects in the same order",
        ),
        (
            [
                {"background": "gray", "objects": [{"shape": "circle", "color": "red", "motion": "enters_left"}]},
                {"background": "gray", "objects": [{"shape": "circle", "color": "red", "motion": "enters_left"}]},
            ],
            "already in frame",
        ),
        (
            [
                {"background": "gray", "objects": [{"shape": "circle", "color": "red", "visible": False}]},
                {"background": "gray", "objects": [{"shape": "circle", "color": "red", "motion": "stays"}]},
            ],
            "out of frame at the start",
        ),
        (
            [
                {
                    "background": "gray",
                    "objects": [{"shape": "circle", "color": "red", "visible": False, "motion": "grows"}],
                }
            ],
            "not visible",
        ),
        ([{"background": "gray", "duration": -1}], "`script[0].duration`"),
    ],
)
def test_validation_errors(script, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_script(script)


def test_argument_errors():
    with pytest.raises(ValueError, match="`num_condition_frames`"):
        clip_frame_ranges(2, 9, 9)
    with pytest.raises(ValueError, match="`num_objects`"):
        random_script(3, num_objects=5)
    with pytest.raises(ValueError, match="`fps`"):
        render_script(_script(), fps=0)


def test_toy_render_cli(tmp_path):
    from diffusers_longvid.cli import main

    out = tmp_path / "v.mp4"
    assert (
        main(
            [
                "toy-render",
                "--random",
                "3",
                "--seed",
                "2",
                "--out",
                str(out),
                "--size",
                "32",
                "--fps",
                "8",
                "--clip-seconds",
                "1",
                "--metadata",
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0
    script = load_script(tmp_path / "v.json")
    assert script == validate_script(random_script(3, seed=2))
    meta = json.loads((tmp_path / "v.meta.json").read_text())
    assert meta["num_frames"] == 24 and len(meta["visible"]) == 24
    import imageio.v3 as iio

    frames = iio.imread(out)
    assert frames.shape == (24, 32, 32, 3)
    again = tmp_path / "again.mp4"
    assert (
        main(
            [
                "toy-render",
                "--script",
                str(tmp_path / "v.json"),
                "--out",
                str(again),
                "--size",
                "32",
                "--fps",
                "8",
                "--num-frames",
                "9",
                "--condition-frames",
                "1",
            ]
        )
        == 0
    )
    assert iio.imread(again).shape == (9 + 2 * 8, 32, 32, 3)
