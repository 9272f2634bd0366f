package mail_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/code4me/code4me/internal/mail"
)

func ExampleVerificationEmail() {
	m, err := mail.VerificationEmail("jane@example.com", "Jane", "https://code4me.example/api/user/verify/", "9b2f", mail.VerificationTTL)
	if err != nil {
		log.Fatal(err)
	}
	// With no SMTP host configured, the server uses mail.Dir instead:
	// var s mail.Sender = &mail.Dir{Path: dataDir + "/mail", From: from}
	var s mail.Sender = &mail.SMTP{Host: "smtp.example.com", StartTLS: true, From: "Code4me <noreply@code4me.example>", Timeout: 10 * time.Second}
	_ = s
	_ = context.Background
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
