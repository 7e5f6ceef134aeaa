# syntax=docker/dockerfile:1
# Sluice image: the `sluice` daemon and the `sluice-gen` load generator,
# the binaries of `make build`, stamped the same way (-X main.version).
#   docker build -t sluice:local --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run --rm sluice:local version
# go test ./deploy/ checks this file against the Makefile and the README.

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# The build context has no .git (.dockerignore), so the version comes in
# as an argument; "dev" is also what make build stamps outside git.
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice && \
    go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice-gen ./cmd/sluice-gen

# debian-slim rather than distroless so the compose healthcheck has curl.
FROM debian:bookworm-slim
RUN apt-get update && \
    apt-get install -y --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin sluice
COPY --from=build /out/sluice /out/sluice-gen /usr/local/bin/
COPY schemas/ /etc/sluice/schemas/
COPY sluice.yaml /etc/sluice/sluice.yaml
WORKDIR /etc/sluice
USER sluice
# Admin HTTP: /metrics, /healthz, /readyz and the dashboard.
ENV SLUICE_ADMIN_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "-c", "/etc/sluice/sluice.yaml"]
