# Builds the static tether binary into a distroless image:
#   docker build -t registry.example.com/tether:v0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /tether ./cmd/tether

FROM gcr.io/distroless/static:nonroot
COPY --from=build /tether /tether
USER 65532:65532
ENTRYPOINT ["/tether"]
