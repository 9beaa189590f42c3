# One image for every tickpipe service (schema, simulator, ingester, API); compose.yaml picks
# the command. QuestDB itself runs from its official image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY sql sql
COPY ingest ingest
COPY api api
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app tickpipe \
    && mkdir -p /app/data \
    && chown tickpipe /app/data

USER tickpipe
