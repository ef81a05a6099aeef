package awskms

import (
	"context"

	"errors"
	"fmt"
	"github.com/aws/aws-sdk-go-v2/aws"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/envelopd/envelopd/backends"
)

// classify maps an SDK error (after the retryer gave up, or at once for
// errors it does not retry) to the backend's sentinel errors. The result
// for a failed unwrap is exactly backends.ErrDecrypt, with no detail.
func classify(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return fmt.Errorf("%w: %w: no answer from KMS before the deadline (%v)", backends.ErrUnavailable, context.DeadlineExceeded, err)
	}
	var se *v4.SigningError
	var ce *credentialsError
	if errors.As(err, &ce) || errors.As(err, &se) {
		return fmt.Errorf("%w: no usable AWS credentials from the SDK's default chain (environment, shared files, role): %v", backends.ErrPermission, err)
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		// Transport failures: refused, reset, DNS, TLS.
		return fmt.Errorf("%w: cannot reach KMS: %v", backends.ErrUnavailable, err)
	}
	code := ae.ErrorCode()
	switch code {
	case "InvalidCiphertextException", "IncorrectKeyException":
		return backends.ErrDecrypt
	case "DisabledException":
		return stateError(fmt.Sprintf("the key is disabled: enable it or configure another key (%s)", ae.ErrorMessage()))
	case "KMSInvalidStateException":
		return stateError(fmt.Sprintf("the key is not usable in its current state, for example pending deletion (%s)", ae.ErrorMessage()))
	case "NotFoundException", "InvalidArnException":
		return fmt.Errorf("%w: %s: %s", backends.ErrNotFound, code, ae.ErrorMessage())
	case "AccessDeniedException", "NotAuthorizedException", "UnrecognizedClientException",
		"InvalidSignatureException", "IncompleteSignature", "ExpiredTokenException",
		"InvalidClientTokenId", "MissingAuthenticationToken", "SignatureDoesNotMatch":
		return fmt.Errorf("%w: %s: %s", backends.ErrPermission, code, ae.ErrorMessage())
	case "InvalidKeyUsageException", "UnsupportedOperationException":
		return fmt.Errorf("%w: %s: %s", backends.ErrNotSupported, code, ae.ErrorMessage())
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	if status >= 500 || ae.ErrorFault() == smithy.FaultServer || code == "ThrottlingException" ||
		code == "KeyUnavailableException" || code == "DependencyTimeoutException" || code == "KMSInternalException" {
		return fmt.Errorf("%w: %v", backends.ErrUnavailable, err)
	}
	return fmt.Errorf("KMS refused the request: %v", err)
}

// credentialsError marks a failure of the SDK's credential chain.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// credentialsTagger wraps a credentials provider and marks its errors.
type credentialsTagger struct{ p aws.CredentialsProvider }

func (c credentialsTagger) Retrieve(ctx context.Context) (aws.Credentials, error) {
	cr, err := c.p.Retrieve(ctx)
	if err != nil {
		return cr, &credentialsError{err}
	}
	return cr, nil
}
