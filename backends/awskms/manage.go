package awskms

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/envelopd/envelopd/backends"
)

// KeySpec returns the KMS key spec for an RSA modulus size.
func KeySpec(bits int) (types.KeySpec, error) {
	switch bits {
	case 2048:
		return types.KeySpecRsa2048, nil
	case 3072:
		return types.KeySpecRsa3072, nil
	case 4096:
		return types.KeySpecRsa4096, nil
	}
	return "", fmt.Errorf("%w: AWS KMS RSA keys are 2048, 3072 or 4096 bits, not %d", backends.ErrNotSupported, bits)
}

// aliasName turns "name", "alias/name" or "awskms:alias/name" into "alias/name".
func aliasName(name string) (string, error) {
	name = strings.TrimPrefix(name, Type+":")
	if !strings.HasPrefix(name, "alias/") {
		name = "alias/" + name
	}
	rest := name[len("alias/"):]
	if rest == "" || len(name) > 256 || strings.HasPrefix(rest, "aws/") {
		return "", fmt.Errorf("alias %q: want alias/NAME, not reserved alias/aws/...", name)
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/_-", c)) {
			return "", fmt.Errorf("alias %q: only letters, digits, '/', '_' and '-' are allowed", name)
		}
	}
	return name, nil
}

// GenerateKey creates an RSA ENCRYPT_DECRYPT key in KMS (CreateKey) and, if
// req.Name is set, an alias for it. The returned Ref is the alias when one
// was made, else the key id. A PKCS#1 v1.5 request is refused.
func (b *Backend) GenerateKey(ctx context.Context, req backends.GenerateRequest) (backends.KeyInfo, error) {
	if b.closed.Load() {
		return backends.KeyInfo{}, b.err("generate", req.Name, backends.ErrClosed)
	}
	if req.Padding == backends.PKCS1v15 {
		return backends.KeyInfo{}, b.err("generate", req.Name, fmt.Errorf("%w: padding pkcs1v15: %s", backends.ErrNotSupported, b.ExplainPadding(req.Padding)))
	}
	spec, err := KeySpec(req.Bits)
	if err != nil {
		return backends.KeyInfo{}, b.err("generate", req.Name, err)
	}
	alias := ""
	if req.Name != "" {
		if alias, err = aliasName(req.Name); err != nil {
			return backends.KeyInfo{}, b.err("generate", req.Name, fmt.Errorf("%w: %v", backends.ErrInvalidConfig, err))
		}
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	out, err := b.client.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     spec,
		KeyUsage:    types.KeyUsageTypeEncryptDecrypt,
		Description: aws.String("envelopd recording key"),
		Tags:        []types.Tag{{TagKey: aws.String("created-by"), TagValue: aws.String("envelopd")}},
	})
	if err != nil {
		return backends.KeyInfo{}, b.err("generate", req.Name, classify(ctx, err))
	}
	id := aws.ToString(out.KeyMetadata.KeyId)
	ref := id
	if alias != "" {
		if _, err := b.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(id)}); err != nil {
			return backends.KeyInfo{}, b.err("generate", req.Name, fmt.Errorf("key %s was created, but its alias was not: %w", id, classify(ctx, err)))
		}
		ref = alias
	}
	k, err := b.key(ctx, id)
	if err != nil {
		return backends.KeyInfo{}, err
	}
	info := k.Describe()
	info.Ref = ref
	return info, nil
}

// ListKeys lists the account's RSA ENCRYPT_DECRYPT keys in the region
// (ListKeys, then DescribeKey and GetPublicKey for each; a key that cannot
// be described is left out). Refs are an alias where the key has one.
func (b *Backend) ListKeys(ctx context.Context) ([]backends.KeyInfo, error) {
	if b.closed.Load() {
		return nil, b.err("list", "", backends.ErrClosed)
	}
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	aliases := map[string]string{}
	ap := kms.NewListAliasesPaginator(b.client, &kms.ListAliasesInput{})
	for ap.HasMorePages() {
		page, err := ap.NextPage(ctx)
		if err != nil {
			return nil, b.err("list", "", classify(ctx, err))
		}
		for _, a := range page.Aliases {
			id := aws.ToString(a.TargetKeyId)
			if id != "" && aliases[id] == "" {
				aliases[id] = aws.ToString(a.AliasName)
			}
		}
	}
	var infos []backends.KeyInfo
	kp := kms.NewListKeysPaginator(b.client, &kms.ListKeysInput{})
	for kp.HasMorePages() {
		page, err := kp.NextPage(ctx)
		if err != nil {
			return nil, b.err("list", "", classify(ctx, err))
		}
		for _, e := range page.Keys {
			id := aws.ToString(e.KeyId)
			d, err := b.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
			if err != nil {
				if ctx.Err() != nil {
					return nil, b.err("list", "", classify(ctx, err))
				}
				continue
			}
			m := d.KeyMetadata
			if m == nil || checkUsage(m.KeyUsage, m.KeySpec, m.EncryptionAlgorithms) != nil {
				continue
			}
			info := backends.KeyInfo{Ref: id, ID: id, State: stateName(m.KeyState)}
			if a := aliases[id]; a != "" {
				info.Ref = a
			}
			if m.CreationDate != nil {
				info.Created = *m.CreationDate
			}
			if m.KeyState == types.KeyStateEnabled || m.KeyState == types.KeyStateDisabled {
				if pk, err := b.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)}); err == nil {
					info.Public, _ = parsePublic(pk.PublicKey, m.KeySpec)
				}
			}
			infos = append(infos, info)
		}
	}
	return infos, nil
}
