# diplowatch: polls the sources, delivers digests and serves the web page/API from one process.
#   docker build -t diplowatch .
#   docker run -d -p 127.0.0.1:8080:8080 -v diplowatch-storage:/app/storage diplowatch
# See compose.yaml for secrets and restart policy, docs/web.md for the web page and API.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DIPLOWATCH_CONFIG=/app/sources.yaml \
    DIPLOWATCH_DB=/app/storage/diplowatch.db \
    DIPLOWATCH_HOST=0.0.0.0 \
    DIPLOWATCH_PORT=8080

WORKDIR /app

RUN groupadd --system --gid 10001 diplowatch \
    && useradd --system --uid 10001 --gid diplowatch --home-dir /app --no-create-home --shell /usr/sbin/nologin diplowatch

# Dependencies in their own layer, rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The application itself: a small layer on top.
COPY README.md sources.yaml ./
COPY monitor/ monitor/
# -I: the installed package, not /app/monitor; its entity tables are cached as JSON beside them, as
# Python caches bytecode, so the service (which cannot write there) starts without re-reading YAML
RUN pip install --no-cache-dir --no-deps . \
    && python -I -c "from monitor.entities import load_tables; load_tables()" \
    && mkdir -p /app/storage \
    && chown diplowatch:diplowatch /app/storage

USER 10001:10001
VOLUME ["/app/storage"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["diplowatch", "health"]

ENTRYPOINT ["diplowatch"]
CMD ["run", "--serve"]
