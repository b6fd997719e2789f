# One image for every mesh service (`python -m services.<name> serve`), the
# one-shot `prepare`/`migrate`, and the healthcheck probe: `docker build .` builds it
# (the last stage). `--target gateway` builds the Envoy gateway image and `--target kong`
# the Kong image (kong plus the protos its grpc-gateway plugin reads), both used by k8s/.
# Bases pinned to a release; pin digests too (`image@sha256:...`) where you build.

FROM envoyproxy/envoy:v1.40.0 AS gateway
# What envoy/envoy.yaml (`--target compose`) expects; the JWKS is mounted at deploy time.
COPY envoy/envoy.yaml /etc/envoy/envoy.yaml
COPY gen/expense_mesh.binpb /etc/envoy/expense_mesh.binpb

FROM kong:3.10.0 AS kong
# Where kong/kong.yml's grpc-gateway blocks look (launcher/kong.py KONG_INCLUDE); google/api
# only, so Kong's own google/protobuf well-known types stay visible.
COPY proto/expense /usr/local/kong/include/expense
COPY third_party/google/api /usr/local/kong/include/google/api

# Build stage: the dependencies from the lock (every file's sha256 checked) into a venv,
# then the project itself without dependencies. Nothing of pip's cache or the build
# tools reaches the final image.
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.lock /tmp/requirements.lock
RUN /venv/bin/pip install --require-hashes -r /tmp/requirements.lock
WORKDIR /src
COPY pyproject.toml ./
COPY config config
COPY gen gen
COPY services services
RUN /venv/bin/pip install --no-deps .

FROM python:3.11.14-slim-bookworm AS service
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/venv/bin:$PATH
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && mkdir -p /data /published \
 && chown app:app /data /published
COPY --from=build /venv /venv
# The commands run from /app, so `services` and config/mesh.toml resolve from the source
# tree (kit.config.REPO_ROOT), as in a checkout. Compose's named volumes start as copies
# of /data and /published, so they are owned by app too.
WORKDIR /app
COPY config config
COPY gen gen
COPY services services
USER 10001:10001
ENV EM_HOST=0.0.0.0 \
    EM_DATA_DIR=/data
EXPOSE 50051 50052 50053 50054 50055 50056
CMD ["python", "-m", "services.launcher", "--help"]
