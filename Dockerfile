# One image, two entrypoints: the operator (node dist/operator/main.js) and the
# relay (node dist/relay/main.js, as the operator's relay Deployments run it).
# `npm run image` builds it with podman (hack/image/build.sh); test/unit/image.test.ts
# checks the build context, the entrypoints and the chart's image references.

# The Node runtime of .node-version (a test checks they agree). `npm run image`
# builds this base from Debian packages when no registry can be pulled.
ARG NODE_VERSION=24.22.3

# 1. Compile TypeScript.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib lib
COPY crds crds
COPY operator operator
COPY relay relay
COPY plugin plugin
RUN npx tsc -p tsconfig.build.json

# 2. Production dependencies only.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts

# 3. The runtime: Node and our files, no npm, a non-root user, nothing writable but /tmp (a volume in the pods).
FROM node:${NODE_VERSION}-bookworm-slim
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn-* \
 && groupadd --gid 65532 smtpc && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin smtpc
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
ENV NODE_ENV=production
USER 65532:65532
EXPOSE 8587 8465 8025 2587 8080 8443
CMD ["node", "dist/operator/main.js"]
