package engine

import "math"

// LogProb returns log softmax(logits)[t]: the log-probability of token t under
// the raw logits, before any sampling transform. It returns -Inf when t is out
// of range or the logits are empty.
func LogProb(logits []float32, t Token) float32 {
	if int(t) < 0 || int(t) >= len(logits) {
		return float32(math.Inf(-1))
	}
	maxv := logits[0]
	for _, v := range logits[1:] {
		if v > maxv {
			maxv = v
		}
	}
	var sum float64
	m := float64(maxv)
	for _, v := range logits {
		sum += math.Exp(float64(v) - m)
	}
	return float32(float64(logits[t]) - m - math.Log(sum))
}

// Confidence is the mean token probability exp(logprob) over logprobs; 0 for
// none.
func Confidence(logprobs []float32) float64 {
	if len(logprobs) == 0 {
		return 0
	}
	var s float64
	for _, lp := range logprobs {
		s += math.Exp(float64(lp))
	}
	return s / float64(len(logprobs))
}
