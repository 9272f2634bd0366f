package mail_test

import (
	"fmt"
	"log"

	"github.com/code4me/code4me/internal/mail"
)

func ExampleVerificationEmail() {
	m, err := mail.VerificationEmail("jane@example.com", "Jane", "https://code4me.example/api/user/verify/", "9b2f", mail.VerificationTTL)
	if err != nil {
		log.Fatal(err)
	}
	// A server sends it with an SMTP sender, or with a Dir when no SMTP host
	// is configured:
	//
	//	var s mail.Sender = &mail.SMTP{Host: host, StartTLS: true, From: from}
	//	err = s.Send(ctx, m)
	fmt.Println(m.Subject)
	fmt.Print(m.Text)
	// Output:
	// Verify Your Email Address
	// Hi Jane,
	//
	// Thank you for signing up! Please verify your email address by opening the link below:
	//
	// https://code4me.example/api/user/verify/?token=9b2f
	//
	// This link will expire in 1440 minutes.
	//
	// If you did not create an account, you can ignore this email.
}
