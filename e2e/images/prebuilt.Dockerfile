# The project's images from binaries already built on the host: what the
# offline path (buildah, e2e/cluster/cluster.sh) builds. Each stage is one
# image; e2e/images/Dockerfile has the same final stages, compiled in Docker.

FROM scratch AS test-server
COPY test-server /test-server
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/test-server"]

FROM scratch AS toolbox
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]

# The proxy: its static binary, and nft with its libraries for init mode
# (e2e/images/nft-root.sh). Init mode runs as root with NET_ADMIN and
# NET_RAW; the proxy as 2102, which init mode exempts from redirection.
FROM scratch AS proxy
COPY plexus-proxy /plexus-proxy
COPY nft-root/ /
USER 2102:2102
ENTRYPOINT ["/plexus-proxy"]

# The control plane: the operator and the webhook, static binaries as an
# unprivileged user (the chart's securityContexts ask for the same).
FROM scratch AS operator
COPY plexus-operator /plexus-operator
USER 65532:65532
ENTRYPOINT ["/plexus-operator"]

FROM scratch AS webhook
COPY plexus-webhook /plexus-webhook
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/plexus-webhook"]
