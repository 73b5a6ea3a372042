"""Secrets: the one place that reads secrets files and knows every secret value fleetctl holds.

- `envfile`: KEY=VALUE files (agents' `secrets_file`s and alternates, `alerts.env`).
- `redact`: the Redactor, which replaces known values in every encoding a program prints,
  and generic credential shapes.
- `known`: "every secret fleetctl knows" for a fleet (all agents' files, alternates, alert
  channel tokens, LLM keys), and the environment alert channels and providers read.

Everyone else asks here; no other module opens an env file or builds its own redaction set.
"""
