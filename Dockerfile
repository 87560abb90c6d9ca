# syntax=docker/dockerfile:1
#
# The image of one wadispatch service: ingest, sender or recorder.
#
#   docker build --build-arg SERVICE=sender -t wadispatch-sender .
#
# A static Go binary (no cgo, so no libc to match) on distroless static,
# running as the image's non-root user. Reproducible: -trimpath drops local
# paths, -buildvcs=false drops the VCS stamp, the module graph is pinned by
# go.sum and the runtime base by digest. The Go image is pinned by tag only:
# its digest changes whenever Debian is rebuilt, while what ends up in the
# binary is decided by the Go version in the tag.
# charts/chartcheck (make chart-check) builds the same package with the same
# command and checks the result is a static ELF.

FROM golang:1.26.8-bookworm AS build
ENV GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG SERVICE
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    test -n "$SERVICE" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/service "./services/$SERVICE"

# The digest gcr.io/distroless/static-debian12:nonroot pointed to in August
# 2026 (as recorded by public dependency-update bots; not resolved from this
# machine, which cannot reach the registry). Refresh with
# `docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot`.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:f5b485ea962d9bd1186b2f6b3a061191539b905b82ec395de78cbfae51f20e35
COPY --from=build /out/service /service
# Numeric, so the kubelet can check runAsNonRoot without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["/service"]
