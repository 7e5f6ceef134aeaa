// Package grafana holds no code. Its tests check the Grafana dashboard
// (dashboards/sluice.json) and the provisioning of the Prometheus and
// Grafana services of docker-compose.yml's profile "observability": every
// query of the dashboard names only metrics (and labels) of the README's
// metrics catalogue, the panels cover what an operator watches, and the
// datasource, the dashboard provider, prometheus.yml and the compose
// services point at each other.
package grafana
