# One image for every service of docker-compose.yml: worker, sandbox, watcher and the CLI.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY sandbox ./sandbox
COPY sample_data ./sample_data
# Editable, so the package finds sample_data/ (default master data and sandbox scenarios)
# next to it in /app rather than looking for it in site-packages.
RUN pip install -e . && useradd --create-home onboard
USER onboard
ENTRYPOINT ["onboard"]
CMD ["--help"]
