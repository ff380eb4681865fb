"""The paper's method: prompts, explain, simulators, Algorithm 1, the prediction store, records."""
