// Package stats computes the confidence intervals of study results: the
// Wilson score interval of a proportion, Newcombe's hybrid score interval
// of a difference of two proportions, Student's t interval of a mean and
// Welch's interval of a difference of two means. The formulas are written
// out in docs/research.md ("Study results"). Every function is pure and
// answers ok false where its interval is undefined (no observations, or
// too few for a variance), never NaN.
package stats

import "math"

// Interval is a two-sided confidence interval [Low, High].
type Interval struct {
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// NormalQuantile2 is z, the standard normal quantile for a two-sided
// interval of the given level (0.95 gives 1.959964): Φ⁻¹((1 + level) / 2)
// = √2 · erf⁻¹(level).
func NormalQuantile2(level float64) float64 {
	return math.Sqrt2 * math.Erfinv(level)
}

// Wilson is the Wilson score interval of the proportion x/n at the given
// level: with p = x/n and z = NormalQuantile2(level),
//
//	centre = (p + z²/2n) / (1 + z²/n)
//	half   = z / (1 + z²/n) · √(p(1−p)/n + z²/4n²)
//
// ok is false when n is 0.
func Wilson(x, n int64, level float64) (Interval, bool) {
	if n <= 0 || x < 0 || x > n {
		return Interval{}, false
	}
	z := NormalQuantile2(level)
	nf := float64(n)
	p := float64(x) / nf
	d := 1 + z*z/nf
	centre := (p + z*z/(2*nf)) / d
	half := z / d * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf))
	// The interval always lies in [0, 1]; clamp the rounding at x = 0 or n.
	return Interval{Low: math.Max(0, centre-half), High: math.Min(1, centre+half)}, true
}

// Newcombe is the hybrid score interval of p1 − p2 (p1 = x1/n1, p2 =
// x2/n2; Newcombe 1998, method 10) from the two Wilson intervals [l1, u1]
// and [l2, u2] at the same level:
//
//	low  = (p1 − p2) − √((p1 − l1)² + (u2 − p2)²)
//	high = (p1 − p2) + √((u1 − p1)² + (p2 − l2)²)
//
// ok is false when n1 or n2 is 0.
func Newcombe(x1, n1, x2, n2 int64, level float64) (Interval, bool) {
	w1, ok1 := Wilson(x1, n1, level)
	w2, ok2 := Wilson(x2, n2, level)
	if !ok1 || !ok2 {
		return Interval{}, false
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	d := p1 - p2
	return Interval{
		Low:  d - math.Hypot(p1-w1.Low, w2.High-p2),
		High: d + math.Hypot(w1.High-p1, p2-w2.Low),
	}, true
}

// MeanInterval is Student's t interval of a mean from n observations
// with sample mean m and sample standard deviation sd (divisor n − 1):
// m ± t(df = n − 1) · sd/√n, t the two-sided quantile of the level. ok is
// false when n < 2.
func MeanInterval(n int64, m, sd, level float64) (Interval, bool) {
	if n < 2 {
		return Interval{}, false
	}
	half := TQuantile2(level, float64(n-1)) * sd / math.Sqrt(float64(n))
	return Interval{Low: m - half, High: m + half}, true
}

// Welch is the interval of the difference of two means m1 − m2 from
// samples of n1 and n2 observations with sample standard deviations sd1
// and sd2, without assuming equal variances: with v_i = sd_i²/n_i,
//
//	se = √(v1 + v2)
//	df = (v1 + v2)² / (v1²/(n1 − 1) + v2²/(n2 − 1))   (Welch–Satterthwaite)
//	(m1 − m2) ± t(df) · se
//
// When both samples have no spread (se = 0) the interval is the
// difference itself and df is 0 (undefined). ok is false when n1 or n2 is
// below 2.
func Welch(n1 int64, m1, sd1 float64, n2 int64, m2, sd2, level float64) (iv Interval, df float64, ok bool) {
	if n1 < 2 || n2 < 2 {
		return Interval{}, 0, false
	}
	d := m1 - m2
	v1, v2 := sd1*sd1/float64(n1), sd2*sd2/float64(n2)
	if v1+v2 == 0 {
		return Interval{Low: d, High: d}, 0, true
	}
	df = (v1 + v2) * (v1 + v2) / (v1*v1/float64(n1-1) + v2*v2/float64(n2-1))
	half := TQuantile2(level, df) * math.Sqrt(v1+v2)
	return Interval{Low: d - half, High: d + half}, df, true
}

// TQuantile2 is the two-sided quantile of Student's t distribution with
// df degrees of freedom (df > 0, not necessarily whole) for the given
// level: the t with P(T ≤ t) = (1 + level)/2.
func TQuantile2(level, df float64) float64 {
	return TQuantile((1+level)/2, df)
}

// TQuantile is the p-quantile of Student's t distribution with df > 0
// degrees of freedom, 0 < p < 1: found by bisection on TCDF to the
// precision of a float64.
func TQuantile(p, df float64) float64 {
	if p == 0.5 {
		return 0
	}
	if p < 0.5 {
		return -TQuantile(1-p, df)
	}
	lo, hi := 0.0, 1.0
	for TCDF(hi, df) < p {
		lo, hi = hi, 2*hi
	}
	for range 200 {
		mid := (lo + hi) / 2
		if mid == lo || mid == hi {
			break
		}
		if TCDF(mid, df) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// TCDF is P(T ≤ t) for Student's t distribution with df > 0 degrees of
// freedom: for t ≥ 0, 1 − I_x(df/2, 1/2)/2 with x = df/(df + t²), I the
// regularised incomplete beta function; symmetric for t < 0.
func TCDF(t, df float64) float64 {
	// x and 1 − x are both computed directly, so neither loses precision
	// to a subtraction when t² is small or large next to df.
	x, y := df/(df+t*t), t*t/(df+t*t)
	tail := betaInc(df/2, 0.5, x, y) / 2
	if t < 0 {
		return tail
	}
	return 1 - tail
}

// betaInc is the regularised incomplete beta function I_x(a, b) for
// a, b > 0 and 0 ≤ x ≤ 1, given y = 1 − x: its continued fraction
// (DLMF 8.17.22), which converges quickly for x < (a+1)/(a+b+2), and
// I_x(a, b) = 1 − I_y(b, a) otherwise.
func betaInc(a, b, x, y float64) float64 {
	switch {
	case x <= 0:
		return 0
	case y <= 0:
		return 1
	case x > (a+1)/(a+b+2):
		return 1 - betaInc(b, a, y, x)
	}
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	front := math.Exp(a*math.Log(x)+b*math.Log(y)-(la+lb-lab)) / a
	return front * betaFraction(a, b, x)
}

// betaFraction evaluates 1/(1 + d1/(1 + d2/(1 + …))) with
//
//	d(2m+1) = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1))
//	d(2m)   = m(b−m)x / ((a+2m−1)(a+2m))
//
// by the modified Lentz method.
func betaFraction(a, b, x float64) float64 {
	const tiny, eps = 1e-300, 1e-16
	// f = 1/(1 + d1/(1 + …)) is the fraction with b0 = 0, a1 = 1, then
	// a(k+1) = d(k) and every b(k) = 1.
	f, c, d := tiny, tiny, 0.0
	for k := 1; k <= 10000; k++ {
		num := 1.0
		if k > 1 {
			j := k - 1 // the term d(j)
			m := float64(j / 2)
			if j%2 == 1 {
				num = -(a + m) * (a + b + m) * x / ((a + 2*m) * (a + 2*m + 1))
			} else {
				num = m * (b - m) * x / ((a + 2*m - 1) * (a + 2*m))
			}
		}
		d = 1 + num*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + num/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		delta := c * d
		f *= delta
		if math.Abs(delta-1) < eps {
			break
		}
	}
	return f
}
