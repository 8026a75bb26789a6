# syntax=docker/dockerfile:1
# One image, both roles: `socksplice agent` (root, capabilities from the chart) and
# `socksplice operator` (non-root, the default user). Both stages run scripts/install.sh, the
# same steps as the README's install, so the image and a developer machine never drift apart:
#   build    runs every step: system packages, the virtual environment, the C load generators.
#   runtime  starts clean, takes the finished /opt/socksplice from build, and runs the script
#            again: its package step installs the same package list, while the venv and load
#            generator steps find their work done (install.sh is idempotent) and skip it.
# Build: docker build -t socksplice/socksplice:dev .

ARG BASE=debian:12-slim

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /opt/socksplice
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY loadgen/ loadgen/
COPY src/ src/
RUN SOCKSPLICE_DEV=0 SOCKSPLICE_VENV=/opt/socksplice/.venv bash scripts/install.sh \
 && rm -rf /root/.cache /var/lib/apt/lists/*

FROM ${BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/socksplice /opt/socksplice
WORKDIR /opt/socksplice
# The chart mounts the node's /usr/src over the image's; a copy of the packaged headers (the
# fallback when the node has none) stays where that mount does not hide it.
RUN SOCKSPLICE_DEV=0 SOCKSPLICE_VENV=/opt/socksplice/.venv bash scripts/install.sh \
 && rm -rf /root/.cache /var/lib/apt/lists/* \
 && mkdir -p /opt/socksplice/kernel-headers \
 && cp -a /usr/src/linux-headers-* /opt/socksplice/kernel-headers/ \
 && groupadd --gid 65532 socksplice \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin socksplice
ENV PATH=/opt/socksplice/.venv/bin:/opt/socksplice/loadgen/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The operator and the hooks run as this user; the agent's pod sets runAsUser: 0.
USER 65532:65532
ENTRYPOINT ["socksplice"]
CMD ["--help"]
