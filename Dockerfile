# syntax=docker/dockerfile:1
# One image, both roles: `socksplice agent` (root, capabilities from the chart) and
# `socksplice operator` (non-root, the default user). Both stages run scripts/install.sh, the
# same steps as the README's install, each with its own package list from that script:
#   build    SOCKSPLICE_STAGE=build: runtime and build packages (APT_PACKAGES and
#            APT_BUILD_PACKAGES: venv, C toolchain, packaged kernel headers), the virtual
#            environment (a normal, non-editable install; without pip, bytecode and the
#            kubernetes client's asyncio copy, kubernetes.aio, 41 MB that nothing imports), the C
#            load generators, and one copy of what bcc includes from the packaged kernel headers
#            in /opt/socksplice/kernel-headers.
#   runtime  SOCKSPLICE_STAGE=runtime: the runtime packages only (no compiler: bcc compiles
#            BPF C with its own clang in libbcc), and from build just the venv, the load
#            generator and the headers copy.
# Build: scripts/image-build.sh (podman or docker; the Makefile target `image`), or
#        docker build -t socksplice/socksplice:dev .

ARG BASE=debian:12-slim

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# pip's CA bundle during the build only (scripts/image-build.sh mounts the host's); unset by default.
ARG PIP_CERT
WORKDIR /opt/socksplice
COPY pyproject.toml README.md ./
COPY scripts/install.sh scripts/install.sh
COPY loadgen/ loadgen/
COPY src/ src/
RUN SOCKSPLICE_STAGE=build SOCKSPLICE_DEV=0 SOCKSPLICE_VENV=/opt/socksplice/.venv bash scripts/install.sh \
 && rm -rf /root/.cache /var/lib/apt/lists/* \
 && /opt/socksplice/.venv/bin/python -m pip uninstall -q -y pip setuptools \
 && find /opt/socksplice/.venv -name __pycache__ -prune -exec rm -rf {} + \
 && rm -rf /opt/socksplice/.venv/lib/python3*/site-packages/kubernetes/aio

FROM ${BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /opt/socksplice
COPY scripts/install.sh scripts/install.sh
# No translations, manuals or package docs from the packages installed here (the same rules
# scripts/image-install.sh puts in the local base image), and no downloaded .debs, apt lists,
# caches or logs left in the layer.
RUN printf 'path-exclude=/usr/share/%s/*\n' doc man locale info >/etc/dpkg/dpkg.cfg.d/01-socksplice-slim \
 && printf 'path-include=/usr/share/doc/*/copyright\n' >>/etc/dpkg/dpkg.cfg.d/01-socksplice-slim \
 && SOCKSPLICE_STAGE=runtime SOCKSPLICE_DEV=0 bash scripts/install.sh \
 && apt-get clean \
 && rm -rf /root/.cache /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
   /var/cache/debconf/*-old \
 && groupadd --gid 65532 socksplice \
 && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin socksplice
# The chart mounts the node's /usr/src over the image's; the packaged headers (the fallback
# when the node has none) live where that mount does not hide them.
COPY --from=build /opt/socksplice/.venv /opt/socksplice/.venv
COPY --from=build /opt/socksplice/kernel-headers /opt/socksplice/kernel-headers
ENV PATH=/opt/socksplice/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The operator and the hooks run as this user; the agent's pod sets runAsUser: 0.
USER 65532:65532
ENTRYPOINT ["socksplice"]
CMD ["--help"]
