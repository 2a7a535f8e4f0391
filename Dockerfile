# One image for every perpstream process: `perpstream produce|sink|snapshots|...`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producer ./producer
COPY consumers ./consumers
COPY perpstream ./perpstream
RUN pip install . && useradd --system --uid 10001 perpstream
USER perpstream
WORKDIR /home/perpstream

ENTRYPOINT ["perpstream"]
CMD ["--help"]
