// The certificate expiry metric: envelopd_certificate_not_after_seconds.

package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

var certNotAfterDesc = prometheus.NewDesc("envelopd_certificate_not_after_seconds",
	"Unix time at which the certificate of a tenant key expires (keys from the configuration and uploads, active and retired; keys without a certificate are absent). Alert on it minus time().",
	[]string{"tenant", "key", "state"}, nil)

// certCollector reports, at each scrape, the certificates of the generation
// in use, so that reloads and uploads show without bookkeeping.
type certCollector struct{ s *Server }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certNotAfterDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	rt := c.s.acquireGeneration()
	if rt == nil {
		return
	}
	defer rt.release()
	for _, t := range rt.tenants {
		for _, k := range t.keys {
			cert := k.cert()
			if cert == nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(certNotAfterDesc, prometheus.GaugeValue,
				float64(cert.NotAfter.Unix()), t.name, k.id, k.state)
		}
	}
}
