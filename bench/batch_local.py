"""Answer a Batch API input file (`vse label --batch`) from a local OpenAI-compatible server, in the Batch
API's output shape, so that `vse label --batch-import` and `--replay` can be tried without the Batch API.

    python bench/batch_local.py batch-in.jsonl batch-out.jsonl --base-url http://127.0.0.1:8765/v1

The replies are the server's own (llama.cpp, vLLM, ...), sent one request at a time; the output file says
so in every line's ``id`` and ``request_id`` (``local-N``). This is how cassettes/examples/label-batch-output.jsonl
was made (docs/labelling.md).
"""

from __future__ import annotations

import argparse

from vse.llm.batch import run_batch_locally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="batch input file(s), then the output file to write")
    parser.add_argument("--base-url", default="http://127.0.0.1:8765/v1")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    args = parser.parse_args()
    if len(args.inputs) < 2:
        parser.error("give INPUT.jsonl [INPUT2.jsonl ...] OUTPUT.jsonl")
    *inputs, output = args.inputs
    counts = run_batch_locally(inputs, output, args.base_url, timeout_s=args.timeout)
    print(f"{counts['ok']} replies with status 200, {counts['failed']} failed; wrote {output}")


if __name__ == "__main__":
    main()
