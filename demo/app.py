"""Any-modality chat with an hf_mera checkpoint, in the browser.

    python demo/app.py [CHECKPOINT] [--host 127.0.0.1] [--port 7860] [--max-new-tokens 64]

CHECKPOINT is a stage folder (`outputs/quickstart/mera-10/stage-4-point_cloud`) or a hub id
(`org/name`, optionally `org/name@revision`); without one, the final MERA stage of the latest
quickstart output under `outputs/quickstart/` is loaded. One message may carry any mix of images,
videos, audio clips and point clouds (`.npy`, `.ply`, `.obj`, `.glb`; the last one is shown in a 3D
viewer) with text; the answer streams in. A file the checkpoint cannot take (too large, unreadable,
an unsupported type, a modality it has not learned) is answered in the chat, never with a crash.

Finding and loading the checkpoint is in `demo/checkpoints.py`; this file is the chat and the page.
Only the public API is used: `AutoModelForCausalLM`, `AutoProcessor`, `apply_chat_template`,
`generate` (plus `hf_mera.modalities.modality_for_path` to route an upload by its extension).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Before gradio is imported: no usage statistics leave the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if not __package__:  # run as `python demo/app.py`: make the `demo` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.checkpoints import (  # noqa: E402
    QUICKSTART_COMMAND,
    QUICKSTART_DIR,
    DemoError,
    find_quickstart_checkpoint,
    learned_order,
    load_checkpoint,
)

logger = logging.getLogger("hf_mera.demo")

POINT_CLOUD_ARRAYS = (".npy", ".npz")


@dataclass
class DemoSettings:
    checkpoint: str | None = field(
        default=None, metadata={"help": "Stage folder or hub id[@revision]; default: latest quickstart MERA."}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to bind (0.0.0.0 = every interface)."})
    port: int = field(default=7860, metadata={"help": "Port to serve on."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest answer, in tokens."})
    max_upload_mb: float = field(default=50.0, metadata={"help": "Largest file the chat accepts, in MB."})
    max_files: int = field(default=8, metadata={"help": "Most files in one message."})
    queue_size: int = field(
        default=64, metadata={"help": "Requests waiting for the model before new ones are turned away."}
    )


def points_as_spheres(points, max_points: int = 2048):
    """A mesh of one small icosahedron per point: the 3D viewer draws bare points one pixel wide."""
    import numpy as np
    import trimesh

    xyz = points[:, :3]
    if len(xyz) > max_points:
        xyz = xyz[np.linspace(0, len(xyz) - 1, max_points).astype(int)]
    radius = 0.01 * float(np.linalg.norm(xyz.max(0) - xyz.min(0)) or 1.0)
    sphere = trimesh.creation.icosphere(subdivisions=0, radius=radius)
    vertices = (xyz[:, None, :] + sphere.vertices[None]).reshape(-1, 3)
    faces = (sphere.faces[None] + len(sphere.vertices) * np.arange(len(xyz))[:, None, None]).reshape(-1, 3)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.visual.vertex_colors = [40, 110, 220, 255]
    return mesh


def _pretty(modality: str) -> str:
    from hf_mera.modalities import get_modality

    return get_modality(modality).spoken_name


class ChatBackend:
    """Turns one chat message (text + files) into a streamed answer; every failure becomes a sentence."""

    def __init__(self, model, processor, settings: DemoSettings, checkpoint: str = ""):
        from hf_mera.modalities import MODALITY_REGISTRY

        self.model = model
        self.processor = processor
        self.settings = settings
        self.checkpoint = checkpoint
        # The order the modalities were learned in (the config keeps insertion order).
        known = [m for m in model.config.modalities if m in processor.modalities]
        # config.json stores modalities sorted by name; the stage's stage.json knows the real order.
        self.order = [m for m in learned_order(checkpoint) if m in known]
        self.known = self.order + [m for m in known if m not in self.order]
        self.extensions = {name: spec.file_extensions for name, spec in MODALITY_REGISTRY.items()}
        self.scratch = Path(tempfile.mkdtemp(prefix="hf_mera_demo_"))

    # ---- what the page shows ------------------------------------------------------------------
    def header(self) -> str:
        unknown = [m for m in self.extensions if m not in self.known]
        lines = [
            f"**Checkpoint:** `{self.checkpoint}`",
            f"**Knows{' (in the order learned)' if self.order == self.known else ''}:** "
            f"{', '.join(_pretty(m) for m in self.known)}, and text.",
        ]
        if unknown:
            lines.append(f"**Not learned:** {', '.join(_pretty(m) for m in unknown)}.")
        lines.append(
            "Attach any mix of "
            + "; ".join(f"{_pretty(m)} ({' '.join(self.extensions[m])})" for m in self.known)
            + f" — up to {self.settings.max_files} files of {self.settings.max_upload_mb:g} MB each."
        )
        return "  \n".join(lines)

    # ---- checking uploads ------------------------------------------------------------------------
    def route(self, path: str) -> str:
        """The modality of an uploaded file, or a `DemoError` saying why the chat cannot take it."""
        from hf_mera.modalities import modality_for_path

        name = Path(path).name
        try:
            modality = modality_for_path(path)
        except ValueError:
            readable = ", ".join(ext for m in self.known for ext in self.extensions[m])
            raise DemoError(
                f"I can't read `{name}`: {Path(path).suffix or 'extension-less'} files are not supported. "
                f"This checkpoint reads {readable}."
            ) from None
        if modality not in self.known:
            raise DemoError(
                f"This checkpoint has not learned {_pretty(modality)} (`{name}`): it knows "
                f"{', '.join(_pretty(m) for m in self.known)}. Load a later stage that learned it."
            )
        try:
            size = Path(path).stat().st_size
        except OSError:
            raise DemoError(f"I can't read `{name}`: the upload is gone.") from None
        limit = self.settings.max_upload_mb * 1e6
        if size > limit:
            raise DemoError(
                f"`{name}` is {size / 1e6:.3g} MB; this demo takes files up to "
                f"{self.settings.max_upload_mb:g} MB (--max-upload-mb)."
            )
        return modality

    def point_cloud_view(self, path: str) -> str | None:
        """A file `gr.Model3D` can show for a point cloud upload (arrays are exported as GLB points)."""
        suffix = Path(path).suffix.lower()
        if suffix in (".ply", ".obj", ".glb", ".gltf", ".stl"):
            return path
        if suffix in POINT_CLOUD_ARRAYS:
            try:
                import numpy as np

                points = np.load(path)
                if suffix == ".npz":
                    points = points[points.files[0]]
                target = self.scratch / f"{Path(path).stem}-{abs(hash(path))}.glb"
                points_as_spheres(np.asarray(points, dtype=np.float32)).export(target)
                return str(target)
            except Exception:  # the view is a nicety: the chat reports unreadable files itself
                logger.info("no 3D view for %s", path, exc_info=True)
        return None

    # ---- the conversation ------------------------------------------------------------------------
    def _history_messages(self, history: list[dict]) -> list[dict]:
        """Earlier turns as text: their files were answered already, and re-encoding every earlier
        file on each turn would make a long chat slower and slower."""
        messages = []
        for turn in history or []:
            content = turn.get("content")
            if isinstance(content, str):
                text = content
            elif isinstance(content, list):
                text = " ".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            else:
                text = ""
            if text.strip() and turn.get("role") in ("user", "assistant"):
                messages.append({"role": turn["role"], "content": text})
        return messages

    def respond(self, message: dict | str, history: list[dict]) -> Iterator[tuple[str, str | None]]:
        """Yield `(answer so far, point cloud to show)`; never raises."""
        view = None
        try:
            if isinstance(message, str):
                message = {"text": message, "files": []}
            text = (message.get("text") or "").strip()
            files = [f if isinstance(f, str) else f.get("path") for f in message.get("files") or []]
            if len(files) > self.settings.max_files:
                raise DemoError(
                    f"That is {len(files)} files; one message takes up to {self.settings.max_files}."
                )
            if not text and not files:
                raise DemoError("Type a question, attach a file, or both.")
            parts = []
            for path in files:
                modality = self.route(path)
                parts.append({"type": modality, "path": path})
                if modality == "point_cloud":
                    view = self.point_cloud_view(path) or view
            parts.append({"type": "text", "text": text or "Describe the input."})
            conversation = self._history_messages(history) + [{"role": "user", "content": parts}]
            try:
                inputs = self.processor.apply_chat_template(
                    conversation, add_generation_prompt=True, tokenize=True
                )
            except ValueError as err:
                raise DemoError(self._unreadable(str(err), files)) from None
            yield from ((answer, view) for answer in self._generate(inputs))
        except DemoError as err:
            yield str(err), view
        except Exception as err:  # a bug or an out-of-memory: the page gets a sentence, the log the trace
            logger.exception("chat request failed")
            yield (
                f"Something went wrong while answering ({type(err).__name__}); the server log has the details.",
                view,
            )

    def _unreadable(self, reason: str, files: list[str]) -> str:
        # The loaders name the upload's temporary path: show the file name the user knows instead.
        for path in files:
            for quoted in (f"'{path}'", f'"{path}"', str(path)):
                reason = reason.replace(quoted, f"`{Path(path).name}`")
        return reason if reason.startswith("Cannot read") else f"I can't read that message: {reason}"

    def _generate(self, inputs) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300
        )
        failure: list[BaseException] = []

        def run():
            try:
                with torch.inference_mode():
                    self.model.generate(
                        **inputs, streamer=streamer, max_new_tokens=self.settings.max_new_tokens
                    )
            except BaseException as err:  # noqa: BLE001  re-raised in the request's thread below
                failure.append(err)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        answer = ""
        for piece in streamer:
            answer += piece
            if answer.strip():
                yield answer
        thread.join()
        if failure:
            raise failure[0]
        if not answer.strip():
            yield "(The model ended its answer at once: it has nothing to say to that.)"


def build_demo(backend: ChatBackend):
    import gradio as gr

    def respond(message, history):
        # The viewer gets each point cloud once: sending it again with every streamed piece makes
        # the browser restart loading it and never draw it. A message without one leaves the last.
        shown = None
        for answer, view in backend.respond(message, history):
            yield answer, view if view is not None and view != shown else gr.skip()
            shown = view

    with gr.Blocks(title="hf_mera any-modality chat") as demo:
        gr.Markdown("# hf_mera any-modality chat")
        gr.Markdown(backend.header(), elem_id="modalities")
        with gr.Row():
            with gr.Column(scale=3):
                view = gr.Model3D(
                    label="Last point cloud", render=False, elem_id="point-cloud-view", height=320
                )
                gr.ChatInterface(
                    respond,
                    multimodal=True,
                    textbox=gr.MultimodalTextbox(
                        # Every type is let through: an unsupported one is answered in the chat
                        # instead of being refused by the upload widget without a word.
                        file_count="multiple",
                        placeholder="Ask about images, videos, audio and point clouds…",
                        elem_id="chat-input",
                    ),
                    additional_outputs=[view],
                    api_name="chat",
                    fill_height=False,
                )
            with gr.Column(scale=1):
                view.render()
    return demo


def parse_args(argv: list[str] | None = None) -> DemoSettings:
    from dataclasses import fields

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(DemoSettings):
        if f.name == "checkpoint":
            parser.add_argument("checkpoint", nargs="?", default=None, help=f.metadata["help"])
        else:
            flag = f"--{f.name.replace('_', '-')}"
            parser.add_argument(flag, type=type(f.default), default=f.default, help=f.metadata["help"])
    return DemoSettings(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    settings = parse_args(argv)
    checkpoint = settings.checkpoint
    if checkpoint is None:
        found = find_quickstart_checkpoint()
        if found is None:
            print(
                f"No checkpoint given and no finished quickstart run under {QUICKSTART_DIR}/.\n"
                f"Make one with `{QUICKSTART_COMMAND}` (about 10 minutes on 2 CPU cores), or pass a stage "
                "folder or hub id: python demo/app.py CHECKPOINT",
                file=sys.stderr,
            )
            return 2
        checkpoint = str(found)
    try:
        model, processor = load_checkpoint(checkpoint)
    except DemoError as err:
        print(err, file=sys.stderr)
        return 2
    backend = ChatBackend(model, processor, settings, checkpoint)
    demo = build_demo(backend)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    # Uploads beyond the chat's limit are refused by gradio itself (a hard cap on disk use); those
    # up to it reach the chat, which answers oversize files in a message.
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        ssr_mode=False,
        show_error=False,
        max_file_size=int(4 * settings.max_upload_mb * 1e6),
        footer_links=["api"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
