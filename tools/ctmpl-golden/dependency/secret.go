// Package dependency mirrors the types consul-template hands to templates
// (hashicorp/consul-template dependency/vault_common.go), so that type names in
// error messages ("*dependency.Secret") and the field order of toJSON match.
package dependency

import "time"

// Secret is consul-template's dependency.Secret, fields in the same order.
type Secret struct {
	RequestID     string
	LeaseID       string
	LeaseDuration int
	Renewable     bool
	Data          map[string]interface{}
	Warnings      []string
	Auth          *SecretAuth
	WrapInfo      *SecretWrapInfo
}

// SecretAuth is consul-template's dependency.SecretAuth.
type SecretAuth struct {
	ClientToken   string
	Accessor      string
	Policies      []string
	Metadata      map[string]string
	LeaseDuration int
	Renewable     bool
}

// SecretWrapInfo is consul-template's dependency.SecretWrapInfo.
type SecretWrapInfo struct {
	Token           string
	TTL             int
	CreationTime    time.Time
	WrappedAccessor string
}
