"""Every user error and environment fault in the CLI: one line on stderr, exit 1 or 2, no traceback.

The reproduce cases run the real command with its cassettes and results redirected to tmp_path
(the committed results/ are never written here).
"""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from vse.cli.main import main
from vse.llm import client as client_module
from vse.studies import runner as run_module

EXP = "chat-vs-completions-baseline"  # the smallest recorded experiment


def invoke(*args: str, env: dict | None = None):
    # click >= 8.2 keeps stderr apart (result.stderr) without being asked.
    return CliRunner().invoke(main, list(args), env=env)


def assert_one_clear_line(result, code: int, *fragments: str) -> str:
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, err, result.exception)
    assert "Traceback" not in err and "Traceback" not in result.output
    lines = [line for line in err.splitlines() if line.startswith("vse: error: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Cassettes and results under tmp_path; the real cassette copied in."""
    paths = run_module.Paths(cassettes=tmp_path / "cassettes", results=tmp_path / "results")
    monkeypatch.setattr(run_module, "_PATHS", paths)
    real = sorted(run_module.Paths().cassettes.joinpath(EXP).glob("*.json.gz"))[0]
    target = paths.cassettes / EXP / real.name
    target.parent.mkdir(parents=True)
    return real, target


def test_unknown_experiment_is_an_input_error():
    result = invoke("reproduce", "--experiment", "nope")
    assert_one_clear_line(result, 2, "unknown experiment 'nope'", EXP)


def test_missing_cassette_names_it(sandbox):
    _real, target = sandbox
    result = invoke("reproduce", "--experiment", EXP)
    assert_one_clear_line(result, 1, str(target), "missing")


def test_truncated_cassette_names_the_file(sandbox):
    real, target = sandbox
    target.write_bytes(real.read_bytes()[:5000])
    result = invoke("reproduce", "--experiment", EXP)
    line = assert_one_clear_line(result, 1, str(target), "cut short")
    assert "Aborted" not in result.stderr and line


def test_a_flipped_byte_in_the_gzip_names_the_file(sandbox):
    real, target = sandbox
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0x40
    target.write_bytes(bytes(data))
    result = invoke("reproduce", "--experiment", EXP)
    assert_one_clear_line(result, 1, str(target), "unreadable")


def test_bad_json_in_the_cassette_names_the_file(sandbox):
    _real, target = sandbox
    target.write_bytes(gzip.compress(b'{"interactions": [}'))
    result = invoke("reproduce", "--experiment", EXP)
    assert_one_clear_line(result, 1, str(target), "not JSON")


@pytest.mark.enable_socket
def test_connection_refused_is_an_environment_error(sandbox, monkeypatch):
    monkeypatch.setattr(client_module.LLMClient, "_backoff", lambda self, attempt, retry_after, connection=False: 0.0)
    result = invoke("reproduce", "--record", "--experiment", EXP, "--base-url", "http://127.0.0.1:1")
    line = assert_one_clear_line(
        result, 1, "http://127.0.0.1:1/v1 is down", "attempts in a row", "refused the connection"
    )
    assert "HTTPConnectionPool" not in result.stderr and len(line) < 250


def test_bad_base_url_is_an_input_error(sandbox):
    result = invoke("reproduce", "--record", "--experiment", EXP, "--base-url", "127.0.0.1:8765")
    assert_one_clear_line(result, 2, "base URL", "127.0.0.1:8765")


def test_debug_shows_the_traceback():
    result = invoke("--debug", "reproduce", "--experiment", "nope")
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError)  # re-raised, not turned into a line


def test_vse_debug_env_shows_the_traceback():
    result = invoke("reproduce", "--experiment", "nope", env={"VSE_DEBUG": "1"})
    assert isinstance(result.exception, ValueError)


def test_options_without_effect_are_named(sandbox):
    result = invoke("reproduce", "--experiment", EXP, "--model", "x", "--base-url", "http://h:1")
    assert "vse: warning: --base-url, --model have no effect without --record" in result.stderr


def test_a_bug_keeps_its_traceback(monkeypatch):
    from vse.studies import registry as experiments

    def bug(name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(experiments, "get_experiment", bug)
    result = invoke("reproduce", "--experiment", EXP)
    assert isinstance(result.exception, RuntimeError)


def test_classify():
    from vse.cli.errors import classify
    from vse.errors import UserError
    from vse.llm.errors import CassetteError

    assert classify(UserError("x")) == (2, "x")
    assert classify(CassetteError("c.json.gz", "cut"))[0] == 1
    assert classify(FileNotFoundError(2, "No such file or directory", "a/b"))[1] == "No such file or directory: a/b"
    assert classify(ModuleNotFoundError("No module named 'torch'"))[0] == 1
    assert classify(RuntimeError("bug")) is None
    assert classify(KeyError("k")) is None
    assert json.dumps(classify(ValueError("bad")))  # plain data


# -- missing pieces of the local server, missing modules --------------------------------------------

LLAMA_CPP_LOG = (
    "llama.cpp server exited with code 1 during start-up; log /home/u/.cache/vse/models/logs/server-4242.log:\n"
    """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/x/vse/llm/fastlogprobs.py", line 12, in <module>
    import llama_cpp
ModuleNotFoundError: No module named 'llama_cpp'"""
)


def test_a_server_start_error_is_its_first_line_the_logs_last_line_and_what_to_install():
    from vse.cli.errors import classify
    from vse.llm.errors import ServerStartError

    code, message = classify(ServerStartError(LLAMA_CPP_LOG))
    assert code == 1 and "\n" not in message and "Traceback" not in message and "File " not in message
    assert message.startswith(
        "llama.cpp server exited with code 1 during start-up; log /home/u/.cache/vse/models/logs/server-4242.log"
    )
    assert "[last log line: ModuleNotFoundError: No module named 'llama_cpp']" in message
    assert "make llm-server" in message


@pytest.mark.parametrize(
    "module, command",
    [
        ("llama_cpp", "make llm-server"),
        ("torch", "pip install -e '.[vision]'"),
        ("PIL.Image", "pip install -e '.[vision]'"),
        ("matplotlib.pyplot", "pip install -e '.[report]'"),
        ("somepkg", "pip install somepkg"),
    ],
)
def test_a_missing_module_is_named_with_the_command_that_installs_it(module, command):
    from vse.cli.errors import classify

    code, message = classify(ModuleNotFoundError(f"No module named '{module}'", name=module))
    assert code == 1 and f"No module named '{module}'" in message and command in message


def test_a_hint_on_an_error_is_appended():
    from vse.cli.errors import classify
    from vse.llm.errors import LLMError

    err = LLMError("the thing failed")
    err.hint = "run `vse llm build-server`"
    assert classify(err) == (1, "the thing failed (run `vse llm build-server`)")


def test_out_of_memory_is_an_environment_error_with_what_to_do():
    from vse.cli.errors import classify

    class OutOfMemoryError(RuntimeError):  # torch.cuda.OutOfMemoryError's name
        pass

    code, message = classify(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"))
    assert code == 1 and "--batch-size" in message and "\n" not in message
    code, message = classify(RuntimeError("CUDA error: no kernel image is available for execution on the device\nhint"))
    assert (
        code == 1
        and message
        == "GPU error: CUDA error: no kernel image is available for execution on the device (try --device cpu)"
    )
    assert classify(RuntimeError("some bug")) is None


def test_missing_build_tools_for_the_local_server_are_one_line_naming_them(tmp_path, monkeypatch):
    """`vse explain` with no endpoint starts the local server; the server module's own error for a
    machine without cmake/compilers (raised for real, PATH emptied) ends as one line with the fix."""
    import shutil

    from vse.llm import server

    if not hasattr(server, "build_llama_server"):
        pytest.skip("the server module has no llama-server build yet")
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    monkeypatch.setattr(
        server, "endpoint_or_local", lambda stack, base_url, port=None: server.build_llama_server(tmp_path)
    )
    monkeypatch.delenv("VSE_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = invoke("explain", "efficientnet_lite0/_conv_head/3", "--method", "weight-label")
    line = assert_one_clear_line(result, 1, "cmake", "not found on PATH")
    assert "apt-get install" in line or "apt install" in line


def test_every_error_class_a_user_can_cause_is_classified():
    """The project's own error classes, each with an exit status: none would reach the user as a traceback."""
    from vse.cli.errors import classify
    from vse.llm import errors as E
    from vse.method.simulators.embedding import EmbeddingMissing
    from vse.studies.layer_labelling import OutputBusy, RunStopped
    from vse.vision.datasets import UnreadableImage
    from vse.vision.models import VisionModelError, WeightsMissingError

    samples = [
        E.LLMHTTPError(400, "bad", "http://h/v1"),
        E.LLMRetriesExhausted("http://h/v1", 3, 503, "busy"),
        E.LLMEndpointDown("http://h:1", 5, "refused the connection"),
        E.LLMResponseError("http://h/v1", "no choices", "{}"),
        E.CassetteMiss("c.json.gz", "POST", "/v1/completions", "{}"),
        E.CassetteError("c.json.gz", "cut short"),
        EmbeddingMissing(__import__("pathlib").Path("c.embeddings.npz"), ["a dog"]),
        E.ModelAssemblyError("part 3 is corrupt"),
        E.ServerStartError("did not start"),
        OutputBusy(__import__("pathlib").Path("o.jsonl")),
        RunStopped(E.LLMEndpointDown("http://h:1", 5, "x"), done=1, total=2, done_now=1, out="o"),
        VisionModelError("unknown layer"),
        WeightsMissingError("no weights"),
        UnreadableImage("a.png: bad"),
        PermissionError(13, "Permission denied", "out/x"),
        IsADirectoryError(21, "Is a directory", "d"),
    ]
    for exc in samples:
        verdict = classify(exc)
        assert verdict is not None and verdict[0] in (1, 2) and verdict[1], exc


def test_a_replay_whose_embedding_store_lacks_a_text_is_one_line_naming_the_store(tmp_path):
    # The validate example recorded one target; a replay on two asks for the captions' texts, never embedded.
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).resolve().parents[2] / "cassettes" / "examples" / "validate", tmp_path / "v")
    store = tmp_path / "v" / "efficientnet_lite0___conv_head__fair.embeddings.npz"
    result = invoke(
        "validate", "efficientnet_lite0/_conv_head", "--units", "1,2,3,4", "--methods", "weight-label",
        "--targets", "weight-label,caption-activation", "--n", "4", "--cassettes", str(tmp_path / "v"), "--replay",
    )  # fmt: skip
    line = assert_one_clear_line(result, 1, f"embedding store {store} has no embedding for", "without --replay")
    assert "(first: '" in line


def test_a_replay_without_its_embedding_store_says_how_to_record_it(tmp_path):
    import shutil
    from pathlib import Path

    shutil.copytree(Path(__file__).resolve().parents[2] / "cassettes" / "examples" / "validate", tmp_path / "v")
    store = tmp_path / "v" / "efficientnet_lite0___conv_head__fair.embeddings.npz"
    store.unlink()
    result = invoke(
        "validate", "efficientnet_lite0/_conv_head", "--units", "1,2,3,4", "--methods", "weight-label",
        "--targets", "weight-label", "--n", "4", "--cassettes", str(tmp_path / "v"), "--replay",
    )  # fmt: skip
    assert_one_clear_line(result, 1, f"embedding store {store} is missing", "the same command without --replay")
