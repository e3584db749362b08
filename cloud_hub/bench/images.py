"""``cloud-hub bench images``: asset reuse against always-fresh generation on real prompt streams.

Replays the Krea Discord log (default: timestamp order, its seeds, step counts, CFG scales and
grid sizes) or PartiPrompts (``--stream parti``) or any prompt file (``--prompts PATH``) through
two ``ImageService`` instances on one backend, each with its own store: one that reuses
(``reuse="variation"``, the default a client gets) and one that always generates fresh. Requests
are interleaved, so load on the machine hits both alike. Before the stream, the variation
threshold and skip table are calibrated on PartiPrompts kept out of the stream.

The backend is the production architecture with random weights (Stable Diffusion shape, or Wan
with ``--video``), shrunk by ``--side-scale`` (512 px → 32 px by default); step counts are the
logged ones unless ``--steps-scale`` says otherwise. Steps saved are exact; wall time is this
machine's. Then, unless ``--no-extras``: the large→small split schedule, the cascade's cost
structure and diffusers' step caches, measured.

Output: a table, ``<out>/images[-video].json`` and ``.png``; the last printed line is one JSON
object with ``requests``, ``compute_saved``, ``reuse_share``, ``min_variation_distance``,
``variation_threshold`` and ``repeat_returns``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloud_hub.bench import image_streams as streams
from cloud_hub.bench import images_extras, images_report
from cloud_hub.images.base import ImageBackend, lib
from cloud_hub.images.calibrate import calibrate
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.features import ThumbnailDistance
from cloud_hub.images.quality import load_clip
from cloud_hub.images.service import ImageService
from cloud_hub.images.store import AssetStore
from cloud_hub.images.video_backend import WanVideoBackend
from shared import paths
from shared.images import ImageRequest, ReuseMode, ReuseTrace, VideoRequest
from shared.routing.embed import TextEmbedder, load_default_embedder

HELP = "images/video: asset reuse vs always-fresh on real prompt streams (steps, time, variation)"
TENANT, USER = "bench", "user-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", type=Path, default=None, help="CSV/TSV/JSONL with a prompt column")
    parser.add_argument("--stream", choices=("krea", "parti"), default="krea", help="data-folder stream")
    parser.add_argument("--requests", type=int, default=40, help="requests replayed (default 40)")
    parser.add_argument("--video", action="store_true", help="video requests on the Wan backend")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="JSON + PNG folder")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $EDGEROUTE_DATA_DIR")
    parser.add_argument("--side-scale", type=float, default=1 / 16, help="picture sides × this")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="logged step counts × this")
    parser.add_argument("--max-n", type=int, default=9, help="pictures per request at most")
    parser.add_argument("--frames", type=int, default=9, help="frames per video (4k + 1)")
    parser.add_argument("--calibration-prompts", type=int, default=6)
    parser.add_argument("--floor", type=float, default=0.25, help="threshold = floor × p5 fresh distance")
    parser.add_argument("--clip", default=None, help="CLIP model id or folder for CLIP scores")
    parser.add_argument("--no-extras", action="store_true", help="skip split / cascade / step-cache")


@dataclass
class Run:
    """One service's returns over the stream."""

    traces: list[ReuseTrace] = field(default_factory=list)
    wall_s: float = 0.0
    per_request: list[list[Any]] = field(default_factory=list)  # thumbnails of each request's returns
    returned: Counter[tuple[str, str]] = field(default_factory=Counter)  # (user, asset) → times
    clip: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(t.steps_run for t in self.traces)


def _events(args: argparse.Namespace, data: Path) -> list[streams.PromptEvent]:
    if args.prompts is not None:
        events = streams.file_stream(args.prompts)
    elif args.stream == "parti":
        held_out = set(streams.calibration_prompts(data, args.calibration_prompts))
        events = [e for e in streams.file_stream(data / streams.PARTI) if e.prompt not in held_out]
    else:
        events = streams.krea_stream(data / streams.KREA)
    cut = events[: args.requests]
    return [
        streams.scaled(e, side_scale=args.side_scale, steps_scale=args.steps_scale, max_n=args.max_n)
        for e in cut
    ]


def _backend(args: argparse.Namespace) -> ImageBackend:
    if args.video:
        return WanVideoBackend.tiny()
    return DiffusersImageBackend.tiny()


def _issue(
    svc: ImageService,
    e: streams.PromptEvent,
    mode: ReuseMode,
    video: bool,
    frames: int,
    run: Run,
    scorer: Any,
) -> None:
    dist = ThumbnailDistance()
    began = time.perf_counter()
    thumbs, pixels = [], []
    if video:
        for i in range(e.n):
            req = VideoRequest(
                e.prompt,
                TENANT,
                USER,
                frames=frames,
                width=e.width,
                height=e.height,
                steps=e.steps,
                guidance_scale=e.guidance,
                seed=e.seed + i,
                reuse=mode,
            )
            v = svc.generate_video_sync(req).video
            run.traces.append(v.trace)
            run.returned[(USER, v.asset_id)] += 1
            thumbs.append(images_report.thumb_of(dist, v.frames_png))
            pixels.append(images_report.decode(v.frames_png[len(v.frames_png) // 2]))
    else:
        image_req = ImageRequest(
            e.prompt,
            TENANT,
            USER,
            n=e.n,
            width=e.width,
            height=e.height,
            steps=e.steps,
            guidance_scale=e.guidance,
            seed=e.seed,
            reuse=mode,
        )
        for img in svc.generate_sync(image_req).images:
            run.traces.append(img.trace)
            run.returned[(USER, img.asset_id)] += 1
            thumbs.append(images_report.thumb_of(dist, [img.png]))
            pixels.append(images_report.decode(img.png))
    run.wall_s += time.perf_counter() - began
    run.per_request.append(thumbs)
    if scorer is not None:
        run.clip += scorer.scores(pixels, [e.prompt] * len(pixels))


def run(args: argparse.Namespace, embedder: TextEmbedder | None = None) -> int:
    console = Console(stderr=True, width=140)
    # prompts longer than CLIP's 77 tokens are truncated as in production; no need to say so 2,000 times
    for name in ("transformers", "diffusers"):
        lib(name).logging.set_verbosity_error()
    data = args.data_dir or paths.data_dir()
    events = _events(args, data)
    if not events:
        console.print("[red]no prompts in the stream")
        return 1
    embedder = embedder or load_default_embedder()
    backend = _backend(args)
    scorer, clip_note = load_clip(args.clip)
    side = Counter((e.width, e.height) for e in events).most_common(1)[0][0]
    cal_prompts = streams.calibration_prompts(data, args.calibration_prompts)
    cal_steps = max(8, min(25, round(20 * args.steps_scale)))
    with console.status("[bold]calibrating the variation threshold and skip table"):
        began = time.perf_counter()
        policy, cal = calibrate(
            backend,
            cal_prompts,
            width=side[0],
            height=side[1],
            steps=cal_steps,
            floor=args.floor,
            guidance_scale=5.0 if args.video else streams.BOT_CFG,
            frames=args.frames if args.video else 1,
        )
        cal_s = time.perf_counter() - began
    console.print(
        f"calibration ({len(cal_prompts)} PartiPrompts, {cal_steps} steps, {cal_s:.0f} s): {cal.summary()}"
    )
    reuse, fresh = Run(), Run()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        stores = [AssetStore(Path(tmp) / name) for name in ("reuse.db", "fresh.db")]
        services = [ImageService(backend, s, embedder, policy, video_backend=backend) for s in stores]
        total = 2 * sum(e.n for e in events)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("replaying (fresh baseline + reuse)", total=total)
            for e in events:
                _issue(services[1], e, "fresh", args.video, args.frames, fresh, scorer)
                bar.advance(task, e.n)
                _issue(services[0], e, "variation", args.video, args.frames, reuse, scorer)
                bar.advance(task, e.n)
        for s in stores:
            s.close()
    summary = images_report.summarise(reuse, fresh, policy, cal.summary(), events, args)
    summary["quality"] = images_report.quality(reuse.clip, fresh.clip, clip_note, scorer)
    if not args.no_extras:
        with console.status("[bold]measuring split, cascade and step caches"):
            summary["extras"] = images_extras.measure(args.video, cal_prompts[:3], side, cal_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "images-video" if args.video else "images"
    images_report.print_summary(console, summary)
    images_report.plot(reuse, fresh, policy.threshold, args.out / f"{stem}.png")
    (args.out / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(images_report.final_line(summary)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloud-hub bench images", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
