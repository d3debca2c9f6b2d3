# syntax=docker/dockerfile:1
# Guildhouse: one cluster per container. Build: docker build -t guildhouse .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cluster ./cluster
COPY ipc ./ipc
COPY sandbox ./sandbox
# Runtime dependencies only: no dev tools, no embedded database wheels (URLs are set).
RUN pip install .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 guildhouse \
 && useradd --system --uid 10001 --gid guildhouse --home-dir /app --shell /usr/sbin/nologin guildhouse
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    HTTP_PORT=8080 \
    DATA_DIR=/tmp/guildhouse
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["guildhouse"]
CMD ["run"]
