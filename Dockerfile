# smsgw gateway: slim Python base, non-root user, health check.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin smsgw \
    && mkdir -p /data && chown smsgw:smsgw /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY carriers ./carriers
COPY antifraud ./antifraud
COPY senderid ./senderid
COPY metrics ./metrics
RUN pip install . && rm -rf /root/.cache

USER smsgw
ENV SMSGW_DB=/data/smsgw.db
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["smsgw", "serve", "--host", "0.0.0.0", "--port", "8080"]
