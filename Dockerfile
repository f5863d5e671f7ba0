# wyoming-openai: Wyoming server for OpenAI speech (linux/amd64 and linux/arm64).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY wyoming_openai ./wyoming_openai
RUN pip install --no-cache-dir --upgrade pip && pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10300 --home-dir /app wyoming
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WYOMING_OPENAI_URI=tcp://0.0.0.0:10300
USER wyoming
WORKDIR /app
EXPOSE 10300
ENTRYPOINT ["wyoming-openai"]
