package awskms

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/envelopd/envelopd/backends"
)

// Type is the registered backend type.
const Type = "awskms"

func init() { backends.Register(Type, nil, Open) }

// Options configure a Backend (the [backends.NAME] table of type "awskms").
type Options struct {
	// Region is the AWS region of the keys. Required.
	Region string `toml:"region"`
	// Endpoint overrides the KMS endpoint (a VPC endpoint, or local-kms in
	// tests). It must be https unless the host is a loopback address.
	Endpoint string `toml:"endpoint"`
	// Profile selects a profile of the shared config files.
	Profile string `toml:"profile"`
	// MaxAttempts bounds the attempts per call, retries included (default 5).
	MaxAttempts int `toml:"max_attempts"`
	// MaxBackoff bounds the wait between attempts, a Go duration (default "2s").
	MaxBackoff string `toml:"max_backoff"`
	// Timeout bounds a call whose context has no deadline (default "30s").
	Timeout string `toml:"timeout"`
}

// Defaults.
const (
	DefaultMaxAttempts = 5
	DefaultMaxBackoff  = 2 * time.Second
	DefaultTimeout     = 30 * time.Second
)

// ErrKeyState means the KMS key exists but cannot be used in its current
// state (disabled, pending deletion, pending import, unavailable). Errors
// wrapping it also wrap backends.ErrUnavailable. Retrying does not help:
// someone has to enable the key or cancel its deletion.
var ErrKeyState = errors.New("key is not usable in its current state")

// api is the part of the KMS client the backend uses: the test seam.
type api interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error)
	ListKeys(context.Context, *kms.ListKeysInput, ...func(*kms.Options)) (*kms.ListKeysOutput, error)
	ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error)
	CreateKey(context.Context, *kms.CreateKeyInput, ...func(*kms.Options)) (*kms.CreateKeyOutput, error)
	CreateAlias(context.Context, *kms.CreateAliasInput, ...func(*kms.Options)) (*kms.CreateAliasOutput, error)
}

// Backend is an AWS KMS backend.
type Backend struct {
	name    string
	region  string
	client  api
	timeout time.Duration
	idle    interface{ CloseIdleConnections() } // may be nil
	closed  atomic.Bool

	mu       sync.Mutex
	probeARN string // a key resolved before, for Health
}

var (
	_ backends.Backend          = (*Backend)(nil)
	_ backends.Generator        = (*Backend)(nil)
	_ backends.Lister           = (*Backend)(nil)
	_ backends.PaddingExplainer = (*Backend)(nil)
	_ backends.Key              = (*Key)(nil)
	_ backends.Describer        = (*Key)(nil)
)

// Open creates a backend. It loads the SDK's default configuration (which
// reads credentials lazily) and makes no request.
func Open(ctx context.Context, in backends.Instance, o Options) (*Backend, error) {
	return open(ctx, in, o)
}

// open is Open with extra SDK load options (tests pass static credentials).
func open(ctx context.Context, in backends.Instance, o Options, extra ...func(*config.LoadOptions) error) (*Backend, error) {
	name := in.NameOr(Type)
	bad := func(format string, a ...any) error {
		return &backends.Error{Backend: name, Type: Type, Op: "configure", Err: fmt.Errorf("%w: "+format, append([]any{backends.ErrInvalidConfig}, a...)...)}
	}
	if strings.TrimSpace(o.Region) == "" {
		return nil, bad("region is required")
	}
	if o.Endpoint != "" {
		if err := checkEndpoint(o.Endpoint); err != nil {
			return nil, bad("endpoint: %v", err)
		}
	}
	attempts := o.MaxAttempts
	switch {
	case attempts == 0:
		attempts = DefaultMaxAttempts
	case attempts < 1 || attempts > 20:
		return nil, bad("max_attempts must be between 1 and 20, not %d", attempts)
	}
	parse := func(field, s string, def time.Duration) (time.Duration, error) {
		if s == "" {
			return def, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, bad("%s: %q is not a positive duration such as \"2s\"", field, s)
		}
		return d, nil
	}
	maxBackoff, err := parse("max_backoff", o.MaxBackoff, DefaultMaxBackoff)
	if err != nil {
		return nil, err
	}
	timeout, err := parse("timeout", o.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}

	lo := []func(*config.LoadOptions) error{
		config.WithRegion(o.Region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = attempts
				so.MaxBackoff = maxBackoff
			})
		}),
	}
	if o.Profile != "" {
		lo = append(lo, config.WithSharedConfigProfile(o.Profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(lo, extra...)...)
	if err != nil {
		return nil, &backends.Error{Backend: name, Type: Type, Op: "configure", Err: fmt.Errorf("%w: loading the AWS configuration: %v", backends.ErrInvalidConfig, err)}
	}
	// Freeze the SDK's HTTP client (with any CA bundle the shared config
	// asks for) so that Close can release its idle connections.
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		cfg.HTTPClient = bc.Freeze()
	}
	idle, _ := cfg.HTTPClient.(interface{ CloseIdleConnections() })
	if cfg.Credentials != nil {
		// Mark credential failures so classify can tell them from
		// network failures (the SDK wraps them in plain strings).
		cfg.Credentials = aws.NewCredentialsCache(credentialsTagger{cfg.Credentials})
	}
	client := kms.NewFromConfig(cfg, func(ko *kms.Options) {
		if o.Endpoint != "" {
			ko.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	return &Backend{name: name, region: strings.TrimSpace(o.Region), client: client, timeout: timeout, idle: idle}, nil
}

// checkEndpoint accepts https URLs, and http ones only for loopback hosts:
// a Decrypt response carries the session key.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q is not a base URL such as https://kms.eu-west-1.amazonaws.com", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if h == "localhost" {
			return nil
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only for loopback hosts, because Decrypt responses carry session keys; use https", s)
	}
	return fmt.Errorf("%q: scheme must be https", s)
}

// Type returns "awskms".
func (b *Backend) Type() string { return Type }

// Capabilities: OAEP with SHA-1 or SHA-256, RSA 2048 to 4096 bits.
func (b *Backend) Capabilities() backends.Capabilities {
	return backends.Capabilities{Paddings: []backends.Padding{backends.OAEPSHA1, backends.OAEPSHA256}, MinBits: 2048, MaxBits: 4096}
}

// ExplainPadding says why AWS KMS cannot unwrap p and what to do instead.
func (b *Backend) ExplainPadding(p backends.Padding) string {
	if p != backends.PKCS1v15 {
		return ""
	}
	return "AWS KMS cannot decrypt PKCS#1 v1.5 (rsaEncryption); its RSA keys decrypt only RSAES_OAEP_SHA_1 and RSAES_OAEP_SHA_256. " +
		"Set padding = \"oaep-sha256\" for this key (recipients then open envelopes with openssl cms, not openssl smime), " +
		"or keep PKCS#1 v1.5 recipients on a file, pkcs11 or transit backend"
}

func (b *Backend) err(op, ref string, err error) error {
	return &backends.Error{Backend: b.name, Type: Type, Op: op, Ref: ref, Err: err}
}

// ctx applies the default timeout when the caller set no deadline.
func (b *Backend) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.timeout)
}

// keyID extracts the KMS key identifier from a reference.
func keyID(ref string) (string, error) {
	r, err := backends.ParseRef(ref)
	if err != nil {
		return "", err
	}
	if r.Scheme != "" && r.Scheme != Type {
		return "", fmt.Errorf("%q is a %s reference, not an awskms one", ref, r.Scheme)
	}
	id := r.Opaque
	if id == "" || len(id) > 2048 {
		return "", fmt.Errorf("key reference must be a key id, key ARN, alias/NAME or alias ARN")
	}
	for _, c := range id {
		if c <= ' ' || c == 0x7f {
			return "", fmt.Errorf("key reference contains spaces or control characters")
		}
	}
	return id, nil
}

// Key resolves ref with DescribeKey, checks that it is an enabled RSA
// ENCRYPT_DECRYPT key that can do OAEP, and fetches its public key.
func (b *Backend) Key(ctx context.Context, ref string) (backends.Key, error) {
	return b.key(ctx, ref)
}

func (b *Backend) key(ctx context.Context, ref string) (*Key, error) {
	if b.closed.Load() {
		return nil, b.err("key", ref, backends.ErrClosed)
	}
	id, err := keyID(ref)
	if err != nil {
		return nil, b.err("key", ref, fmt.Errorf("%w: %v", backends.ErrNotFound, err))
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	d, err := b.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	if err != nil {
		return nil, b.err("key", ref, classify(ctx, err))
	}
	m := d.KeyMetadata
	if m == nil || m.KeyId == nil || m.Arn == nil {
		return nil, b.err("key", ref, fmt.Errorf("%w: DescribeKey returned no key metadata", backends.ErrUnavailable))
	}
	if err := checkState(m.KeyState, aws.ToString(m.KeyId)); err != nil {
		return nil, b.err("key", ref, err)
	}
	if err := checkUsage(m.KeyUsage, m.KeySpec, m.EncryptionAlgorithms); err != nil {
		return nil, b.err("key", ref, err)
	}
	arn := aws.ToString(m.Arn)
	pk, err := b.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(arn)})
	if err != nil {
		return nil, b.err("key", ref, classify(ctx, err))
	}
	// DescribeKey's algorithms are authoritative (local-kms leaves them out
	// of GetPublicKey); the public key must agree on spec and usage.
	if pk.KeySpec != m.KeySpec || pk.KeyUsage != m.KeyUsage {
		return nil, b.err("key", ref, fmt.Errorf("%w: GetPublicKey says %s/%s, DescribeKey %s/%s", backends.ErrUnavailable, pk.KeySpec, pk.KeyUsage, m.KeySpec, m.KeyUsage))
	}
	pub, err := parsePublic(pk.PublicKey, m.KeySpec)
	if err != nil {
		return nil, b.err("key", ref, err)
	}
	b.mu.Lock()
	b.probeARN = arn
	b.mu.Unlock()
	k := &Key{
		b: b, ref: ref, id: aws.ToString(m.KeyId), arn: arn, pub: pub,
		algs: slices.Clone(m.EncryptionAlgorithms), spec: string(m.KeySpec),
		state: m.KeyState,
	}
	if m.CreationDate != nil {
		k.created = *m.CreationDate
	}
	return k, nil
}

// checkState turns a key state other than Enabled into a clear error.
func checkState(s types.KeyState, id string) error {
	switch s {
	case types.KeyStateEnabled:
		return nil
	case types.KeyStateDisabled:
		return stateError(fmt.Sprintf("key %s is disabled: enable it (aws kms enable-key) or configure another key", id))
	case types.KeyStatePendingDeletion, types.KeyStatePendingReplicaDeletion:
		return stateError(fmt.Sprintf("key %s is pending deletion: cancel the deletion (aws kms cancel-key-deletion) and enable it, or configure another key", id))
	case types.KeyStatePendingImport:
		return stateError(fmt.Sprintf("key %s has no key material yet (pending import)", id))
	case "":
		return nil // not reported (older or partial implementations)
	}
	return stateError(fmt.Sprintf("key %s is in state %s", id, s))
}

func stateError(msg string) error {
	return fmt.Errorf("%w: %w: %s", backends.ErrUnavailable, ErrKeyState, msg)
}

var oaepAlgs = []types.EncryptionAlgorithmSpec{types.EncryptionAlgorithmSpecRsaesOaepSha1, types.EncryptionAlgorithmSpecRsaesOaepSha256}

func checkUsage(u types.KeyUsageType, spec types.KeySpec, algs []types.EncryptionAlgorithmSpec) error {
	switch spec {
	case types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096:
	default:
		return fmt.Errorf("%w: key spec %s: envelopd needs an RSA_2048, RSA_3072 or RSA_4096 key", backends.ErrNotSupported, spec)
	}
	if u != types.KeyUsageTypeEncryptDecrypt {
		return fmt.Errorf("%w: key usage %s: envelopd needs a key created with key usage ENCRYPT_DECRYPT", backends.ErrNotSupported, u)
	}
	if !slices.ContainsFunc(algs, func(a types.EncryptionAlgorithmSpec) bool { return slices.Contains(oaepAlgs, a) }) {
		return fmt.Errorf("%w: key offers none of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256", backends.ErrNotSupported)
	}
	return nil
}

func parsePublic(der []byte, spec types.KeySpec) (*rsa.PublicKey, error) {
	p, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: GetPublicKey returned an unparsable key: %v", backends.ErrUnavailable, err)
	}
	pub, ok := p.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: GetPublicKey returned a %T, not an RSA key", backends.ErrNotSupported, p)
	}
	if want := strings.TrimPrefix(string(spec), "RSA_"); want != fmt.Sprint(pub.N.BitLen()) {
		return nil, fmt.Errorf("%w: key spec %s but a %d-bit public key", backends.ErrUnavailable, spec, pub.N.BitLen())
	}
	return pub, nil
}

// Health checks that KMS answers with the configured credentials: a
// DescribeKey of a key resolved before, else ListKeys with Limit 1. It
// tries at most twice, so an unreachable endpoint is reported promptly as
// backends.ErrUnavailable. It does not check key states.
func (b *Backend) Health(ctx context.Context) error {
	if b.closed.Load() {
		return b.err("health", "", backends.ErrClosed)
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	few := func(o *kms.Options) { o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 2) }
	b.mu.Lock()
	arn := b.probeARN
	b.mu.Unlock()
	var err error
	if arn != "" {
		_, err = b.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)}, few)
	} else {
		_, err = b.client.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(1)}, few)
	}
	if err != nil {
		return b.err("health", "", classify(ctx, err))
	}
	return nil
}

// Close releases idle connections. Keys of a closed backend fail with
// backends.ErrClosed.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if b.idle != nil {
		b.idle.CloseIdleConnections()
	}
	return nil
}

// Key is an RSA key in AWS KMS.
type Key struct {
	b       *Backend
	ref     string
	id, arn string
	pub     *rsa.PublicKey
	algs    []types.EncryptionAlgorithmSpec
	spec    string
	created time.Time
	state   types.KeyState
}

// Public returns the key's RSA public key.
func (k *Key) Public() *rsa.PublicKey { return k.pub }

// KeySpec returns the key's KMS key spec, e.g. "RSA_3072".
func (k *Key) KeySpec() string { return k.spec }

// ARN returns the key's ARN.
func (k *Key) ARN() string { return k.arn }

// Describe returns the resolved key id (not the alias) and the key's state
// when it was resolved.
func (k *Key) Describe() backends.KeyInfo {
	return backends.KeyInfo{Ref: k.ref, ID: k.id, Public: k.pub, Created: k.created, State: stateName(k.state)}
}

// Paddings returns the paddings this key accepts (a subset of the backend's).
func (k *Key) Paddings() []backends.Padding {
	var ps []backends.Padding
	for _, p := range []backends.Padding{backends.OAEPSHA1, backends.OAEPSHA256} {
		if slices.Contains(k.algs, algorithm(p)) {
			ps = append(ps, p)
		}
	}
	return ps
}

func algorithm(p backends.Padding) types.EncryptionAlgorithmSpec {
	switch p {
	case backends.OAEPSHA1:
		return types.EncryptionAlgorithmSpecRsaesOaepSha1
	case backends.OAEPSHA256:
		return types.EncryptionAlgorithmSpecRsaesOaepSha256
	}
	return ""
}

// Decrypt unwraps ciphertext with KMS Decrypt. Only the OAEP paddings are
// supported. Any failure that is about the ciphertext is backends.ErrDecrypt.
func (k *Key) Decrypt(ctx context.Context, ciphertext []byte, opts backends.DecryptOptions) ([]byte, error) {
	b := k.b
	if b.closed.Load() {
		return nil, b.err("decrypt", k.ref, backends.ErrClosed)
	}
	alg := algorithm(opts.Padding)
	if alg == "" {
		return nil, b.err("decrypt", k.ref, fmt.Errorf("%w: padding %s: %s", backends.ErrNotSupported, opts.Padding, b.ExplainPadding(opts.Padding)))
	}
	if !slices.Contains(k.algs, alg) {
		return nil, b.err("decrypt", k.ref, fmt.Errorf("%w: key %s does not offer %s", backends.ErrNotSupported, k.id, alg))
	}
	if err := ctx.Err(); err != nil {
		return nil, b.err("decrypt", k.ref, err)
	}
	// The modulus length is public: a ciphertext of another length cannot
	// decrypt, and KMS need not be asked.
	if len(ciphertext) != (k.pub.N.BitLen()+7)/8 {
		return nil, backends.ErrDecrypt
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	out, err := b.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:               aws.String(k.arn),
		CiphertextBlob:      ciphertext,
		EncryptionAlgorithm: alg,
	})
	if err != nil {
		err = classify(ctx, err)
		if errors.Is(err, backends.ErrDecrypt) {
			return nil, backends.ErrDecrypt
		}
		if errors.Is(err, backends.ErrPermission) {
			// Some implementations answer AccessDenied for a key that
			// is disabled; say which when DescribeKey can tell.
			if d, derr := b.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.arn)}); derr == nil && d.KeyMetadata != nil {
				if serr := checkState(d.KeyMetadata.KeyState, k.id); serr != nil {
					err = serr
				}
			}
		}
		return nil, b.err("decrypt", k.ref, err)
	}
	if out.Plaintext == nil {
		return []byte{}, nil // an empty message (the JSON field is omitted)
	}
	return out.Plaintext, nil
}

func stateName(s types.KeyState) string {
	switch s {
	case types.KeyStateEnabled:
		return "active"
	case "":
		return ""
	}
	// PendingDeletion -> pending-deletion
	var sb strings.Builder
	for i, c := range string(s) {
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				sb.WriteByte('-')
			}
			c += 'a' - 'A'
		}
		sb.WriteRune(c)
	}
	return sb.String()
}
