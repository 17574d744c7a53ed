# Builds the static tether binary into a distroless image, for one platform:
#   docker build -t registry.example.com/tether:v0.1.0 .
# or for the clusters people run, amd64 and arm64 in one multi-arch image:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 -t registry.example.com/tether:v0.1.0 --push .
# The build stage runs on the builder's own platform and cross-compiles
# (CGO_ENABLED=0), so no emulation is needed; `make cross` checks the same
# two binaries without Docker.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /tether ./cmd/tether

FROM gcr.io/distroless/static:nonroot
COPY --from=build /tether /tether
USER 65532:65532
ENTRYPOINT ["/tether"]
