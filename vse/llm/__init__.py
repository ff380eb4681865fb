"""The LLM side: the HTTP client, cassettes, errors, pricing, batches and the local server."""
