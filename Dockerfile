# IAM Steward: one image for web, worker and one-off commands (see Procfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY checks ./checks
COPY migrations ./migrations
# sandbox/ (the local Slack and the demo) is installed from a checkout, never shipped here.
RUN pip install . && useradd --create-home --uid 10001 steward
USER steward

ENV PORT=3000
EXPOSE 3000
# Run `steward db upgrade` as a release step before starting new web/worker processes.
CMD ["sh", "-c", "steward serve --port ${PORT}"]
