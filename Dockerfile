# mockllm-tui, headless, as a small container image.
#   docker build -t mockllm-tui .
#   docker run --rm -p 8000:8000 -v "$PWD/responses.yml:/config/responses.yml:ro" mockllm-tui
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY mockllm_tui ./mockllm_tui
RUN python -m venv /opt/mockllm \
    && /opt/mockllm/bin/pip install --no-cache-dir /src

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="mockllm-tui" \
      org.opencontainers.image.description="A deterministic mock of the OpenAI, Anthropic, Gemini, Ollama, Azure OpenAI and Bedrock APIs" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/mockllm /opt/mockllm
COPY responses.yml /config/responses.yml
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mockllm
ENV PATH=/opt/mockllm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MOCKLLM_HEADLESS=1 \
    MOCKLLM_HOST=0.0.0.0 \
    MOCKLLM_PORT=8000 \
    MOCKLLM_RESPONSES=/config/responses.yml
USER 10001
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# mockllm-tui runs as PID 1 and stops cleanly on SIGTERM (docker stop) within 2 seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mockllm-tui"]
CMD ["--headless", "--host", "0.0.0.0"]
