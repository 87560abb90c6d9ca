# syntax=docker/dockerfile:1
#
# The dev tools image: every program of the dev module, tools/cmd (firestore-emulator,
# pubsub-emulator, whatsapp-simulator, ...) in one image, for the emulators
# the chart runs when devEmulators.enabled is true (skaffold's dev profile).
# Each Deployment picks its program with `command`.
#
#   docker build -f build/tools.Dockerfile -t wadispatch-tools .
#
# Same build rules and base image digest as the services' Dockerfile.

FROM golang:1.26.8-bookworm AS build
ENV GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
COPY tools/go.mod tools/go.sum tools/
RUN --mount=type=cache,target=/go/pkg/mod cd tools && go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    cd tools && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot@sha256:f5b485ea962d9bd1186b2f6b3a061191539b905b82ec395de78cbfae51f20e35
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
