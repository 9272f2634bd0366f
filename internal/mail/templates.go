package mail

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	texttemplate "text/template"
	"time"
)

// Subject lines, as Code4me V2 sent them: plugins and users know them.
const (
	VerificationSubject  = "Verify Your Email Address"
	PasswordResetSubject = "Reset Your Password"
)

// EmailChangedSubject is the subject of the notice sent to an account's
// previous address when its email is changed.
const EmailChangedSubject = "Your Email Address Was Changed"

// Default token lifetimes, as Code4me V2 had them: a verification link
// lasts a day, a password reset link 15 minutes.
const (
	VerificationTTL  = 24 * time.Hour
	PasswordResetTTL = 15 * time.Minute
)

// TokenLink returns base with the query parameter token set:
// "<base>?token=<token>", or "&token=" when base already has a query.
func TokenLink(base, token string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("mail: link base %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("mail: link base %q: scheme must be http or https", base)
	}
	q := u.Query()
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

type templateData struct {
	Name    string
	Link    string
	Minutes int
}

// VerificationEmail is the message sent on sign-up and on resend: a link to
// verifyURL with the token, valid for ttl.
func VerificationEmail(to, name, verifyURL, token string, ttl time.Duration) (Message, error) {
	return render(to, VerificationSubject, verificationText, verificationHTML, name, verifyURL, token, ttl)
}

// PasswordResetEmail is the message sent on a reset request: a link to
// resetURL with the token, valid for ttl.
func PasswordResetEmail(to, name, resetURL, token string, ttl time.Duration) (Message, error) {
	return render(to, PasswordResetSubject, resetText, resetHTML, name, resetURL, token, ttl)
}

// EmailChangedEmail is the notice sent to the previous address of an
// account whose email was changed to newEmail: the owner of that address
// learns of a change they did not make. It carries no link or token.
func EmailChangedEmail(to, name, newEmail string) (Message, error) {
	data := struct{ Name, NewEmail string }{name, newEmail}
	var t, h bytes.Buffer
	if err := emailChangedText.Execute(&t, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", emailChangedText.Name(), err)
	}
	if err := emailChangedHTML.Execute(&h, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", emailChangedHTML.Name(), err)
	}
	return Message{To: to, Subject: EmailChangedSubject, Text: t.String(), HTML: h.String()}, nil
}

func render(to, subject string, text *texttemplate.Template, html *htmltemplate.Template, name, base, token string, ttl time.Duration) (Message, error) {
	link, err := TokenLink(base, token)
	if err != nil {
		return Message{}, err
	}
	data := templateData{Name: name, Link: link, Minutes: int(ttl / time.Minute)}
	var t, h bytes.Buffer
	if err := text.Execute(&t, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", text.Name(), err)
	}
	if err := html.Execute(&h, data); err != nil {
		return Message{}, fmt.Errorf("mail: render %s: %w", html.Name(), err)
	}
	return Message{To: to, Subject: subject, Text: t.String(), HTML: h.String()}, nil
}

var verificationText = texttemplate.Must(texttemplate.New("verification.txt").Parse(
	`Hi {{if .Name}}{{.Name}}{{else}}there{{end}},

Thank you for signing up! Please verify your email address by opening the link below:

{{.Link}}

This link will expire in {{.Minutes}} minutes.

If you did not create an account, you can ignore this email.
`))

var verificationHTML = htmltemplate.Must(htmltemplate.New("verification.html").Parse(
	`<!DOCTYPE html>
<html>
<body style="font-family: Arial, sans-serif; line-height: 1.5; color: #333;">
<p>Hi {{if .Name}}{{.Name}}{{else}}there{{end}},</p>
<p>Thank you for signing up! Please verify your email address by clicking the button below:</p>
<p><a href="{{.Link}}" style="display: inline-block; padding: 10px 20px; background-color: #4CAF50; color: #fff; text-decoration: none; border-radius: 5px;">Verify Email</a></p>
<p>Or copy this link into your browser:<br>{{.Link}}</p>
<p>This link will expire in {{.Minutes}} minutes.</p>
<p>If you did not create an account, you can ignore this email.</p>
</body>
</html>
`))

var resetText = texttemplate.Must(texttemplate.New("reset.txt").Parse(
	`Hi {{if .Name}}{{.Name}}{{else}}there{{end}},

We received a request to reset your password. Open the link below to choose a new one:

{{.Link}}

This link will expire after {{.Minutes}} minutes.

If you did not ask to reset your password, you can ignore this email; your password stays as it is.
`))

var resetHTML = htmltemplate.Must(htmltemplate.New("reset.html").Parse(
	`<!DOCTYPE html>
<html>
<body style="font-family: Arial, sans-serif; line-height: 1.5; color: #333;">
<p>Hi {{if .Name}}{{.Name}}{{else}}there{{end}},</p>
<p>We received a request to reset your password. Click the button below to choose a new one:</p>
<p><a href="{{.Link}}" style="display: inline-block; padding: 10px 20px; background-color: #f44336; color: #fff; text-decoration: none; border-radius: 5px;">Reset Password</a></p>
<p>Or copy this link into your browser:<br>{{.Link}}</p>
<p>This link will expire after {{.Minutes}} minutes.</p>
<p>If you did not ask to reset your password, you can ignore this email; your password stays as it is.</p>
</body>
</html>
`))

var emailChangedText = texttemplate.Must(texttemplate.New("email-changed.txt").Parse(
	`Hi {{if .Name}}{{.Name}}{{else}}there{{end}},

The email address of your code4me account was changed to {{.NewEmail}}. Mail about the account, password resets included, now goes to that address.

If you made this change, you can ignore this email. If you did not, someone who knows your password has your account: contact the administrator of your code4me server.
`))

var emailChangedHTML = htmltemplate.Must(htmltemplate.New("email-changed.html").Parse(
	`<!DOCTYPE html>
<html>
<body style="font-family: Arial, sans-serif; line-height: 1.5; color: #333;">
<p>Hi {{if .Name}}{{.Name}}{{else}}there{{end}},</p>
<p>The email address of your code4me account was changed to <strong>{{.NewEmail}}</strong>. Mail about the account, password resets included, now goes to that address.</p>
<p>If you made this change, you can ignore this email. If you did not, someone who knows your password has your account: contact the administrator of your code4me server.</p>
</body>
</html>
`))
