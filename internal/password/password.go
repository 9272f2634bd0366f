// Package password hashes and verifies user passwords with argon2id.
//
// Hashes are PHC strings in the format argon2-cffi writes,
//
//	$argon2id$v=19$m=65536,t=2,p=2$<salt>$<hash>
//
// with salt and hash in standard base64 without padding, so hashes created by
// the original Python platform (argon2-cffi's PasswordHasher, whatever its
// parameters and hash length) verify here, and hashes made here verify there.
//
// Argon2id costs memory by design: each hash holds Params.Memory KiB for its
// duration. Hash and Verify therefore run at most GOMAXPROCS computations at
// a time and wait, honouring ctx, for a turn; a burst of logins queues instead
// of exhausting memory.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters.
type Params struct {
	// Memory is the memory cost in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism (lanes).
	Threads uint8
	// SaltLen is the length of the random salt in bytes.
	SaltLen uint32
	// KeyLen is the length of the derived hash in bytes.
	KeyLen uint32
}

// Default is what Hash uses: 64 MiB, two passes, two lanes, a 16-byte salt and
// a 32-byte hash. It is above OWASP's argon2id floor (46 MiB, t=1) and costs
// about 60 ms on the 2-core development VM (BenchmarkHash); RFC 9106's
// t=3,p=4 at 64 MiB costs twice that there for no extra memory hardness.
var Default = Params{Memory: 64 << 10, Time: 2, Threads: 2, SaltLen: 16, KeyLen: 32}

// Limits on parameters read from a stored hash, so a corrupted or hostile row
// cannot make Verify allocate gigabytes or spin for minutes.
const (
	maxMemory  = 1 << 20 // KiB: 1 GiB
	maxTime    = 64
	minKeyLen  = 4
	maxKeyLen  = 1024
	minSaltLen = 8
	maxSaltLen = 1024
)

// ErrMalformed is returned for a string that is not an argon2id PHC hash this
// package can verify.
var ErrMalformed = errors.New("password: malformed argon2id hash")

var (
	b64 = base64.RawStdEncoding
	sem = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
)

// Hash hashes password with Default.
func Hash(ctx context.Context, password string) (string, error) {
	return Default.Hash(ctx, password)
}

// Hash hashes password with a fresh random salt and returns the PHC string.
func (p Params) Hash(ctx context.Context, password string) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: read salt: %w", err)
	}
	key, err := derive(ctx, password, salt, p)
	if err != nil {
		return "", err
	}
	return p.encode(salt, key), nil
}

// Verify reports whether password matches the PHC string encoded. A mismatch
// is (false, nil); a string that cannot be parsed is (false, ErrMalformed);
// a ctx that ends while waiting for a turn is (false, ctx.Err()).
func Verify(ctx context.Context, password, encoded string) (bool, error) {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, err
	}
	got, err := derive(ctx, password, salt, p)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than p
// (or cannot be parsed), so that a successful login should store a fresh
// hash. It compares for equality, as argon2-cffi's check_needs_rehash does.
func (p Params) NeedsRehash(encoded string) bool {
	q, _, _, err := decode(encoded)
	return err != nil || q != p
}

// NeedsRehash is Default.NeedsRehash.
func NeedsRehash(encoded string) bool { return Default.NeedsRehash(encoded) }

func derive(ctx context.Context, password string, salt []byte, p Params) ([]byte, error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("password: wait to hash: %w", ctx.Err())
	}
	defer func() { <-sem }()
	return argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen), nil
}

func (p Params) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("password: time cost %d outside [1, %d]", p.Time, maxTime)
	case p.Threads < 1:
		return errors.New("password: parallelism must be at least 1")
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("password: memory %d KiB outside [8*threads, %d]", p.Memory, maxMemory)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("password: salt length %d outside [%d, %d]", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("password: hash length %d outside [%d, %d]", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

func (p Params) encode(salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// decode parses "$argon2id$v=19$m=M,t=T,p=P$salt$hash".
func decode(encoded string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, ErrMalformed
	}
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, nil, nil, ErrMalformed
		}
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil || (len(v) > 1 && v[0] == '0') {
			return p, nil, nil, ErrMalformed
		}
		switch {
		case k == "m" && !seen[0]:
			p.Memory, seen[0] = uint32(n), true
		case k == "t" && !seen[1]:
			p.Time, seen[1] = uint32(n), true
		case k == "p" && !seen[2] && n <= 255:
			p.Threads, seen[2] = uint8(n), true
		default:
			return p, nil, nil, ErrMalformed
		}
	}
	if seen != [3]bool{true, true, true} {
		return p, nil, nil, ErrMalformed
	}
	if salt, err = b64.Strict().DecodeString(parts[4]); err != nil {
		return p, nil, nil, ErrMalformed
	}
	if key, err = b64.Strict().DecodeString(parts[5]); err != nil {
		return p, nil, nil, ErrMalformed
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if p.validate() != nil {
		return p, nil, nil, ErrMalformed
	}
	return p, salt, key, nil
}
