"""The HTTP runtime: the dispatcher (`create_app`), the chat flow, auth and rate-limit guards, the
FastAPI fallback for the admin API, and the embedded uvicorn runner."""
