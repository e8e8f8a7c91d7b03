# syntax=docker/dockerfile:1
# Container image for alvaria-emailqueue-exporter.
#   docker build -t alvaria-emailqueue-exporter .
#   docker run --read-only -p 9654:9654 alvaria-emailqueue-exporter --demo
# Credentials come from the environment or mounted files at run time; none are baked in.

# --- build: turn the project and its dependencies into wheels --------------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# The source revision: written into the package as plain text, so build_info{revision} and the
# landing page show it (exporter/metrics/buildinfo.py); anything but a plain revision reads as unknown.
ARG REVISION=unknown

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# Every dependency ships manylinux wheels, so no compiler is needed in this stage. The wheel
# carries LICENSE in its metadata.
RUN printf '%s\n' "${REVISION}" > exporter/REVISION \
    && pip wheel --wheel-dir /wheels .

# --- runtime: only the installed package ------------------------------------------------------
FROM python:3.11.14-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="alvaria-emailqueue-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the Alvaria Cloud EmailQueue API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/alvaria-emailqueue-exporter/alvaria-emailqueue-exporter" \
      org.opencontainers.image.documentation="https://alvaria-emailqueue-exporter.github.io/alvaria-emailqueue-exporter/" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# No .pyc writes at run time (the root filesystem may be read-only; pip already compiled
# the installed modules), unbuffered logs, no pip chatter.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed numeric UID/GID so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin exporter

# The wheels are bind-mounted from the build stage, so they never land in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl \
    && alvaria-emailqueue-exporter --version

# The licence, where people and scanners look for it in an image.
COPY LICENSE /usr/share/doc/alvaria-emailqueue-exporter/LICENSE

USER 10001:10001
EXPOSE 9654

# No curl in the image: Python itself asks /healthz. The port follows ALVARIA_LISTEN_ADDRESS
# when that is set (default :9654); urlopen raises on any non-2xx answer, so the exit code is 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('ALVARIA_LISTEN_ADDRESS', ':9654').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["alvaria-emailqueue-exporter"]
