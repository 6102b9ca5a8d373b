# One image for every service of docker-compose.yml: worker, sandbox, watcher and the CLI.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY sandbox ./sandbox
COPY sample_data ./sample_data
RUN pip install . && useradd --create-home onboard
USER onboard
ENTRYPOINT ["onboard"]
CMD ["--help"]
