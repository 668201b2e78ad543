"""The completion server of `repolm serve`: one model behind OpenAI's and llama.cpp's HTTP APIs.

Editors and tools speak to it unchanged: OpenAI clients (`/v1/completions` with `suffix` for fill-in-the-middle,
`/v1/chat/completions`, streamed or not), llama.cpp's editor plugins (`/infill` with `input_extra`), Prometheus
(`/metrics`), and a person with a browser (the page at `/`: completion, infilling with the retrieved context and the
exact prompt shown, chat). Requests run on a `ContinuousBatcher` (they join and leave the running batch between
decode steps), prompts are built by the shared `PromptBuilder`, and with `--repo` completions of a file get
cross-file context from a `RepositoryRetriever`.

Modules: `app` (the app factory, loading, running under uvicorn), `state` (settings and shared objects),
`schemas` (request bodies with their limits), `openai_api`, `llama_api`, `generation` (prompts, submitting,
streaming, cancelling), `guard` (API key and body checks), `errors` (OpenAI's error object), `metrics`,
and `page/` (the page's HTML, JavaScript and CSS, shipped as package data).
"""

from repolm.infer.server.app import create_app, listening_socket, load_state, run_server
from repolm.infer.server.state import ServerConfig, ServerState

__all__ = ["ServerConfig", "ServerState", "create_app", "listening_socket", "load_state", "run_server"]
