"""Install, control, readiness, status, doctor, and the crontab block."""
