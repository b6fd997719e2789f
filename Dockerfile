# One image for every mesh service (`python -m services.<name> serve`), the
# one-shot `prepare`/`migrate`, and the healthcheck probe. `docker build .` builds
# it (last stage); `--target gateway` builds the Envoy gateway image used by k8s/.

FROM envoyproxy/envoy:v1.40.0 AS gateway
# What envoy/envoy.yaml (`--target compose`) expects; the JWKS is mounted at deploy time.
COPY envoy/envoy.yaml /etc/envoy/envoy.yaml
COPY gen/expense_mesh.binpb /etc/envoy/expense_mesh.binpb

FROM python:3.11-slim AS service
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY pyproject.toml ./
COPY config config
COPY gen gen
COPY services services
# `pip install .` brings the dependencies and the generated `expense` package. The
# commands run from /app, so `services` and config/mesh.toml resolve from the source
# tree (kit.config.REPO_ROOT), as in a checkout. Compose's named volumes start as
# copies of /data and /published, so they are owned by app too.
RUN pip install . \
 && mkdir -p /data /published \
 && chown app:app /data /published
USER 10001:10001
ENV EM_HOST=0.0.0.0 \
    EM_DATA_DIR=/data
EXPOSE 50051 50052 50053 50054
CMD ["python", "-m", "services.launcher", "--help"]
