package stats

import (
	"math"
	"testing"
)

// The expected values are published ones, to the 4 decimals given there.

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %.6f, want %.6f (±%g)", what, got, want, tol)
	}
}

// Wilson's interval for the examples of Newcombe, "Two-sided confidence
// intervals for the single proportion: comparison of seven methods",
// Statistics in Medicine 17 (1998) 857–872, Table I, method 3 (score
// interval without continuity correction).
func TestWilson(t *testing.T) {
	for _, c := range []struct {
		x, n      int64
		low, high float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{1, 29, 0.0061, 0.1718},
		{29, 29, 0.8830, 1},
	} {
		iv, ok := Wilson(c.x, c.n, 0.95)
		if !ok {
			t.Fatalf("%d/%d: not ok", c.x, c.n)
		}
		near(t, "low", iv.Low, c.low, 5e-5)
		near(t, "high", iv.High, c.high, 5e-5)
	}
	if _, ok := Wilson(0, 0, 0.95); ok {
		t.Error("0/0 has an interval")
	}
}

// Newcombe's hybrid score interval for the eight examples of Newcombe,
// "Interval estimation for the difference between independent
// proportions: comparison of eleven methods", Statistics in Medicine 17
// (1998) 873–890, Table II, method 10.
func TestNewcombe(t *testing.T) {
	for _, c := range []struct {
		x1, n1, x2, n2 int64
		low, high      float64
	}{
		{56, 70, 48, 80, 0.0524, 0.3339},
		{9, 10, 3, 10, 0.1705, 0.8090},
		{6, 7, 2, 7, 0.0582, 0.8062},
		{5, 56, 0, 29, -0.0381, 0.1926},
		{0, 10, 0, 20, -0.1611, 0.2775},
		{0, 10, 0, 10, -0.2775, 0.2775},
		{10, 10, 0, 20, 0.6791, 1},
		{10, 10, 0, 10, 0.6075, 1},
	} {
		iv, ok := Newcombe(c.x1, c.n1, c.x2, c.n2, 0.95)
		if !ok {
			t.Fatalf("%d/%d − %d/%d: not ok", c.x1, c.n1, c.x2, c.n2)
		}
		near(t, "low", iv.Low, c.low, 5e-5)
		near(t, "high", iv.High, c.high, 5e-5)
	}
	if _, ok := Newcombe(1, 2, 0, 0, 0.95); ok {
		t.Error("an empty second sample has an interval")
	}
}

// tTable is the two-sided 95 % and 99 % quantiles of Student's t, as
// printed in every statistics table (3 decimals).
var tTable = []struct{ df, t95, t99 float64 }{
	{1, 12.706, 63.657}, {2, 4.303, 9.925}, {3, 3.182, 5.841}, {5, 2.571, 4.032}, {9, 2.262, 3.250},
	{10, 2.228, 3.169}, {18, 2.101, 2.878}, {30, 2.042, 2.750}, {100, 1.984, 2.626}, {1e9, 1.960, 2.576},
}

func TestTQuantile(t *testing.T) {
	for _, c := range tTable {
		near(t, "t95", TQuantile2(0.95, c.df), c.t95, 1e-3)
		near(t, "t99", TQuantile2(0.99, c.df), c.t99, 1e-3)
		near(t, "lower tail", TQuantile(0.025, c.df), -c.t95, 1e-3)
	}
	near(t, "z95", NormalQuantile2(0.95), 1.959964, 1e-6)
	// Fractional degrees of freedom (Welch's): the quantile inverts the CDF.
	for _, df := range []float64{0.5, 2.5, 7.3, 24.9} {
		for _, p := range []float64{0.6, 0.9, 0.975, 0.999} {
			near(t, "TCDF(TQuantile)", TCDF(TQuantile(p, df), df), p, 1e-12)
		}
	}
}

// TCDF against the closed forms for 1 (Cauchy) and 2 degrees of freedom.
func TestTCDF(t *testing.T) {
	for _, x := range []float64{-30, -2, -0.5, 0, 0.1, 1, 3, 1e3} {
		near(t, "df 1", TCDF(x, 1), 0.5+math.Atan(x)/math.Pi, 1e-12)
		near(t, "df 2", TCDF(x, 2), 0.5+x/(2*math.Sqrt(2+x*x)), 1e-12)
	}
}

func TestMeanInterval(t *testing.T) {
	// n = 10, mean 5, sd 2: 5 ± t(9)·2/√10.
	iv, ok := MeanInterval(10, 5, 2, 0.95)
	if !ok {
		t.Fatal("not ok")
	}
	half := 2.262 * 2 / math.Sqrt(10)
	near(t, "low", iv.Low, 5-half, 1e-3)
	near(t, "high", iv.High, 5+half, 1e-3)
	if _, ok := MeanInterval(1, 5, 0, 0.95); ok {
		t.Error("one observation has an interval")
	}
}

func TestWelch(t *testing.T) {
	// Equal sizes and spreads: df = 2(n − 1) = 18, se = sd·√(2/n).
	iv, df, ok := Welch(10, 7, 3, 10, 4, 3, 0.95)
	if !ok {
		t.Fatal("not ok")
	}
	near(t, "df", df, 18, 1e-9)
	half := 2.101 * 3 * math.Sqrt(2.0/10)
	near(t, "low", iv.Low, 3-half, 2e-3)
	near(t, "high", iv.High, 3+half, 2e-3)
	// A second sample without spread: df = n1 − 1, the first sample's t
	// interval shifted by the second mean.
	iv, df, _ = Welch(11, 12, 3, 5, 2, 0, 0.95)
	near(t, "df", df, 10, 1e-9)
	half = 2.228 * 3 / math.Sqrt(11)
	near(t, "low", iv.Low, 10-half, 1e-3)
	near(t, "high", iv.High, 10+half, 1e-3)
	// Unequal sizes and spreads: df from Welch–Satterthwaite.
	v1, v2 := 4.0*4/8, 1.0*1/30
	want := (v1 + v2) * (v1 + v2) / (v1*v1/7 + v2*v2/29)
	_, df, _ = Welch(8, 0, 4, 30, 0, 1, 0.95)
	near(t, "df", df, want, 1e-9)
	// No spread at all: the difference itself.
	iv, _, ok = Welch(3, 5, 0, 4, 2, 0, 0.95)
	if !ok || iv.Low != 3 || iv.High != 3 {
		t.Errorf("no spread: %v %v", iv, ok)
	}
	if _, _, ok := Welch(1, 5, 0, 4, 2, 1, 0.95); ok {
		t.Error("one observation has an interval")
	}
}
