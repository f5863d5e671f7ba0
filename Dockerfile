# syntax=docker/dockerfile:1
# wyoming-openai: a Wyoming server for OpenAI speech, for linux/amd64 and linux/arm64
# (Raspberry Pi OS 64-bit). Every dependency installs from a wheel on both (script/check-wheels
# proves it for this image's Python on bookworm), and the build refuses anything else, so no
# stage compiles anything, and the runtime stage holds no compiler.
#
#   docker build -t wyoming-openai .
#   docker build -t wyoming-openai:local --build-arg EXTRAS=local .   # with the local engines
#
# Configuration: environment variables (OPENAI_API_KEY, WYOMING_OPENAI_*) and/or a mounted
# YAML file named by WYOMING_OPENAI_CONFIG (see README.md and config.example.yaml).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build: a venv in /opt/venv
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# Extras of pyproject.toml to install as well, comma-separated; empty: none.
# "local" adds faster-whisper and Piper (serves without an API key, covers OpenAI outages).
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wyoming_openai ./wyoming_openai
# The project is built as a wheel first; then every dependency must come as a wheel
# (--only-binary :all:): one missing for this platform is a clear error here, never a C
# build that fails on a Raspberry Pi after 20 minutes (script/check-wheels checks them).
RUN pip install --upgrade pip \
 && pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && wheel="$(ls /tmp/wheels/wyoming_openai-*.whl)" \
 && if [ -n "$EXTRAS" ]; then spec="$wheel[$EXTRAS]"; else spec="$wheel"; fi \
 && pip install --only-binary :all: "$spec" \
 && rm -rf /tmp/wheels

# ---------------------------------------------------------------- runtime: the venv, no compiler
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10300 wyoming \
 && useradd --system --uid 10300 --gid wyoming --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin wyoming
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WYOMING_OPENAI_URI=tcp://0.0.0.0:10300 \
    WYOMING_OPENAI_WEB_URI=http://0.0.0.0:10301
USER wyoming
WORKDIR /app
# 10300: Wyoming (Home Assistant). 10301: the web face, on every interface of the container;
# the host decides who reaches it (-p, or host networking). A browser on another machine
# gets the microphone only over HTTPS (web.certfile/web.keyfile, or a reverse proxy).
EXPOSE 10300 10301
# A real Wyoming describe -> info exchange (python -m wyoming_openai.health: exit 0, or 1 with
# the reason, shown by `docker inspect`). It follows WYOMING_OPENAI_URI / the config file;
# the start period covers loading the local engines on a Raspberry Pi.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "wyoming_openai.health"]
# docker stop: SIGTERM withdraws the zeroconf advertisement, closes open sessions, exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wyoming-openai"]
