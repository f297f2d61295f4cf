"""The flow of every endpoint that is not a chat: model lists and lookups, token counts, embeddings,
Ollama's show, pull, tags and version.

It reads the body, asks the endpoint to parse the request into a `Query`, records the query,
refuses an unknown model, and sends what the endpoint renders. Embeddings also go through the
faults and the latency, and get their vectors here (engine/embedding.py), so no provider builds
that flow itself.
"""

from __future__ import annotations

from mockllm_tui.core.conversation import RequestError
from mockllm_tui.core.tokens import count_tokens
from mockllm_tui.engine.embedding import NO_REPLY, embed
from mockllm_tui.http.answer import answer_faults
from mockllm_tui.http.exchange import Exchange
from mockllm_tui.providers.base import EmbeddingEndpoint, Endpoint


async def run_simple(endpoint: Endpoint, ex: Exchange) -> None:
    """Serve one request to an endpoint that is not a chat, end to end."""
    request, journal = ex.request, ex.journal
    await ex.read_body()
    try:
        query = endpoint.parse_request(request)
    except RequestError:
        journal.parsed(model=endpoint.named_model(request))
        raise
    journal.parsed(query.conversation, model=query.model, what=query.preview)
    if endpoint.checks_model:
        endpoint.check_model(query.model, request)
    if isinstance(endpoint, EmbeddingEndpoint):
        await answer_faults(ex, NO_REPLY)
        tokens = sum(count_tokens(text) for text in query.texts)
        ex.store.count_tokens_used(tokens)
        vectors = [embed(text, size) for text, size in zip(query.texts, query.dimensions, strict=True)]
        await ex.send_json(200, endpoint.render_embeddings(query, vectors, tokens))
        return
    if not query.stream:
        await ex.send_json(200, endpoint.render_query(query, request))
        return
    frames = list(endpoint.render_query_stream(query, request))
    await ex.start_stream(content_type=endpoint.provider.stream_content_type)
    await ex.send_chunks([f.data for f in frames], [f.text for f in frames])
    await ex.end_stream()
