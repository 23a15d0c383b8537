"""``llara-rag serve``: LLaRA as an HTTP service (OpenAI-compatible embeddings, search, chat) and a chat page.

Needs the ``serve`` extra (FastAPI, uvicorn): ``pip install 'llara-rag[serve]'``.

    app = create_app(LLaRAEmbedding(), store=StoreConfig(path="llara-db"), llm=LocalGenerator())
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from llara_rag.serving.app import API_KEY_ENV, ServiceConfig, create_app

__all__ = ["API_KEY_ENV", "ServiceConfig", "create_app"]
