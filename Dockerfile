# ksm-sync image: `docker build -t ksm-sync .`, then `docker run ksm-sync once ...` (the default).
#
# Checked without a Docker engine by tests/cluster/test_deploy.py: hadolint passes on this file, and
# the build stage's install step (scripts/install-runtime, from the files copied below) is run
# into a fresh virtual environment that then answers `ksm-sync --help`.

# Both stages use one base, pinned to a patch version (written out, not an ARG, so that hadolint
# checks the pin): the venv built in the first stage links to this exact interpreter in the
# second. Add a digest (python:...@sha256:...) where your registry policy asks for one.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
# Only what the install needs: the lock, the package metadata, the code and the script.
COPY requirements.lock pyproject.toml README.md ./
COPY ksm_sync/ ksm_sync/
COPY scripts/install-runtime scripts/install-runtime
RUN scripts/install-runtime /opt/ksm-sync

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="ksm-sync" \
      org.opencontainers.image.description="Mirror Services and Endpoints of a remote Kubernetes cluster into one local namespace" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/ksm-sync /opt/ksm-sync
# kube-service-mirror's image ran /kube-service-mirror: an old Deployment's command runs `loop`.
RUN ["ln", "-s", "/opt/ksm-sync/bin/kube-service-mirror", "/kube-service-mirror"]
ENV PATH=/opt/ksm-sync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so that Kubernetes can check runAsNonRoot without /etc/passwd.
USER 65532:65532
ENTRYPOINT ["ksm-sync"]
CMD ["once"]
