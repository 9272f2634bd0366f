package password

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// fast keeps the tests quick; Default is exercised by TestDefaultRoundTrip
// and BenchmarkHash.
var fast = Params{Memory: 1 << 10, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// Hashes written by argon2-cffi 21.1.0 (Debian's python3-argon2), the
// library of the original platform. The first is also the reference vector of
// the argon2 reference implementation's test suite.
var cffiVectors = []struct{ password, hash string }{
	{"password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
	{"hunter2", "$argon2id$v=19$m=8192,t=1,p=2$A2qkDaJZeQRcgQLCmYBO6Q$ZkoFvY3ygl0uP3zrBXveaQ"},
	{"Tr0ub4dor&3 ünïcode", "$argon2id$v=19$m=65536,t=3,p=4$11xkstfdOWKveRQjQB0oNQ$rj4Hqf+apSNF4WBrbWjs6cjYjjl76GxP/pF/EirgVrY"},
	{"Tr0ub4dor&3 ünïcode", "$argon2id$v=19$m=102400,t=2,p=8$Y/rHczAXfkKq6Kcn/5q25A$l7+sc6r8Mv74aTPwm2JUzA"},
	{"correct horse battery staple", "$argon2id$v=19$m=102400,t=2,p=8$18XhpMweu6Wfbz1JOjXCHg$CpDYnm6ARuuAwO7d4MnnRg"},
}

func TestVerifyArgon2CffiHashes(t *testing.T) {
	ctx := context.Background()
	for _, v := range cffiVectors {
		ok, err := Verify(ctx, v.password, v.hash)
		if err != nil || !ok {
			t.Errorf("Verify(%q, %s) = %v, %v; want true", v.password, v.hash, ok, err)
		}
		ok, err = Verify(ctx, v.password+"x", v.hash)
		if err != nil || ok {
			t.Errorf("Verify(wrong password, %s) = %v, %v; want false", v.hash, ok, err)
		}
		if !NeedsRehash(v.hash) {
			t.Errorf("NeedsRehash(%s) = false for foreign parameters", v.hash)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	h, err := fast.Hash(ctx, "s3cret pässword")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %q lacks the PHC prefix", h)
	}
	parts := strings.Split(h, "$")
	if len(parts[4]) != 22 || len(parts[5]) != 43 {
		t.Fatalf("salt/hash encodings %q %q: want 22 and 43 unpadded base64 chars", parts[4], parts[5])
	}
	if ok, err := Verify(ctx, "s3cret pässword", h); !ok || err != nil {
		t.Fatalf("Verify(right) = %v, %v", ok, err)
	}
	for _, wrong := range []string{"", "s3cret password", "s3cret pässword ", "S3cret pässword"} {
		if ok, err := Verify(ctx, wrong, h); ok || err != nil {
			t.Fatalf("Verify(%q) = %v, %v; want false, nil", wrong, ok, err)
		}
	}
	h2, _ := fast.Hash(ctx, "s3cret pässword")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if fast.NeedsRehash(h) {
		t.Fatal("NeedsRehash is true for a hash made with the same parameters")
	}
	if !Default.NeedsRehash(h) {
		t.Fatal("NeedsRehash is false for a hash made with weaker parameters")
	}
}

func TestDefaultRoundTrip(t *testing.T) {
	ctx := context.Background()
	h, err := Hash(ctx, "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=2,p=2$") {
		t.Fatalf("Default hash %q has unexpected parameters", h)
	}
	if ok, err := Verify(ctx, "hunter2", h); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	if NeedsRehash(h) {
		t.Fatal("NeedsRehash(Default hash) = true")
	}
}

// TestArgon2CffiVerifiesOurHash runs argon2-cffi, when installed, on a hash
// made here: the original platform can read what we write.
func TestArgon2CffiVerifiesOurHash(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil || exec.Command(py, "-c", "import argon2").Run() != nil {
		t.Skip("argon2-cffi not installed (apt-get install python3-argon2)")
	}
	h, err := fast.Hash(context.Background(), "from go ✓")
	if err != nil {
		t.Fatal(err)
	}
	script := "import sys, argon2\nprint(argon2.PasswordHasher().verify(sys.argv[1], sys.argv[2]))"
	out, err := exec.Command(py, "-c", script, h, "from go ✓").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "True" {
		t.Fatalf("argon2-cffi rejected %s: %v\n%s", h, err, out)
	}
}

func TestTamperedAndMalformed(t *testing.T) {
	ctx := context.Background()
	h, err := fast.Hash(ctx, "pw")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	flip := func(s string) string {
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	mismatches := map[string]string{
		"salt changed": strings.Join([]string{"", parts[1], parts[2], parts[3], flip(parts[4]), parts[5]}, "$"),
		"hash changed": strings.Join([]string{"", parts[1], parts[2], parts[3], parts[4], flip(parts[5])}, "$"),
		"time changed": strings.Replace(h, "t=1", "t=2", 1),
		"mem changed":  strings.Replace(h, "m=1024", "m=2048", 1),
	}
	for name, enc := range mismatches {
		if ok, err := Verify(ctx, "pw", enc); ok || err != nil {
			t.Errorf("%s: Verify = %v, %v; want false, nil", name, ok, err)
		}
	}
	malformed := map[string]string{
		"empty":            "",
		"bcrypt":           "$2b$12$abcdefghijklmnopqrstuuJ6cVhQwTq7lK1yD0cO3QcF6eC5p2s1W",
		"argon2i":          strings.Replace(h, "argon2id", "argon2i", 1),
		"old version":      strings.Replace(h, "v=19", "v=16", 1),
		"no version":       strings.Replace(h, "$v=19", "", 1),
		"missing param":    strings.Replace(h, ",p=1", "", 1),
		"repeated param":   strings.Replace(h, "p=1", "m=1", 1),
		"unknown param":    strings.Replace(h, "p=1", "p=1,x=3", 1),
		"leading zero":     strings.Replace(h, "t=1", "t=01", 1),
		"padded salt":      strings.Replace(h, parts[4], parts[4]+"==", 1),
		"bad base64":       strings.Replace(h, parts[5], parts[5][:10]+"!"+parts[5][11:], 1),
		"zero time":        strings.Replace(h, "t=1", "t=0", 1),
		"huge memory":      strings.Replace(h, "m=1024", "m=4294967295", 1),
		"short salt":       strings.Replace(h, parts[4], "c2FsdA", 1),
		"trailing field":   h + "$extra",
		"threads over 255": strings.Replace(h, "p=1", "p=256", 1),
	}
	for name, enc := range malformed {
		if ok, err := Verify(ctx, "pw", enc); ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, %v; want false, ErrMalformed", name, ok, err)
		}
		if !Default.NeedsRehash(enc) {
			t.Errorf("%s: NeedsRehash = false", name)
		}
	}
}

func TestInvalidParams(t *testing.T) {
	for _, p := range []Params{
		{Memory: 1024, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 1024, Time: 1, Threads: 0, SaltLen: 16, KeyLen: 32},
		{Memory: 4, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 1024, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32},
		{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 2},
	} {
		if _, err := p.Hash(context.Background(), "pw"); err == nil {
			t.Errorf("Hash with %+v succeeded", p)
		}
	}
}

// TestConcurrencyBounded holds every hashing slot and checks that a caller
// waits for one and gives up when its context ends.
func TestConcurrencyBounded(t *testing.T) {
	for range cap(sem) {
		sem <- struct{}{}
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			for range cap(sem) {
				<-sem
			}
		})
	}
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := fast.Hash(ctx, "pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hash with all slots busy = %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := fast.Hash(context.Background(), "pw")
		done <- err
	}()
	select {
	case <-done:
		t.Fatal("Hash ran while every slot was busy")
	case <-time.After(20 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("Hash after release: %v", err)
	}
}

func BenchmarkHash(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		if _, err := Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleVerify() {
	ok, err := Verify(context.Background(), "password",
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	fmt.Println(ok, err)
	// Output: true <nil>
}
