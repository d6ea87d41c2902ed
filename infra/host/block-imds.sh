#!/bin/bash
# Runs on each worker instance as root (from the launch template's user data, and again each time Docker starts):
# drops traffic from containers to the instance metadata service, so a worker (which runs code near untrusted
# audio) cannot take the instance role's credentials. Batch runs our jobs in Docker's bridge network, so their
# packets to 169.254.169.254 are forwarded through DOCKER-USER, the chain Docker leaves to us and never flushes.
# The host itself (the ECS agent, the spot interruption watcher) reaches IMDS through OUTPUT, which is untouched;
# task role credentials come from the ECS agent at 169.254.170.2, also untouched.
set -eu
IMDS=169.254.169.254/32
iptables -w -N DOCKER-USER 2>/dev/null || true  # Docker creates it when it starts; before that, we do
if ! iptables -w -C DOCKER-USER -d "$IMDS" -j DROP 2>/dev/null; then
  iptables -w -I DOCKER-USER 1 -d "$IMDS" -j DROP
fi
