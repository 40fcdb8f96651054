//! The typed view of a Partner Center referral: the members the referral → opportunity
//! mapping reads, borrowed from the JSON text; every other member is skipped unparsed.

use crate::read::{Leaf, Lenient, List, record};

record! {
    /// A referral (the input of the referral → opportunity mapping).
    Referral<'a> {
        id: Leaf<'a> = "id",
        name: Leaf<'a> = "name",
        external_reference_id: Leaf<'a> = "externalReferenceId",
        status: Leaf<'a> = "status",
        substatus: Leaf<'a> = "substatus",
        details: Lenient<Details<'a>> = "details",
        invite_context: Lenient<InviteContext<'a>> = "inviteContext",
        customer_profile: Lenient<CustomerProfile<'a>> = "customerProfile",
    }
}

record! {
    /// `details`: the deal.
    Details<'a> {
        deal_value: Leaf<'a> = "dealValue",
        currency: Leaf<'a> = "currency",
        closing_date_time: Leaf<'a> = "closingDateTime",
        notes: Leaf<'a> = "notes",
        requirements: Lenient<Requirements<'a>> = "requirements",
    }
}

record! {
    /// `details.requirements`: only the solutions are mapped.
    Requirements<'a> {
        solutions: List<Solution<'a>> = "solutions",
    }
}

record! {
    /// One entry of `details.requirements.solutions`.
    Solution<'a> {
        id: Leaf<'a> = "id",
    }
}

record! {
    /// `inviteContext`: what Microsoft was asked for.
    InviteContext<'a> {
        assistance_request_code: Leaf<'a> = "assistanceRequestCode",
    }
}

record! {
    /// `customerProfile`: the customer company.
    CustomerProfile<'a> {
        name: Leaf<'a> = "name",
        address: Lenient<Address<'a>> = "address",
        team: List<Member<'a>> = "team",
    }
}

record! {
    /// `customerProfile.address`.
    Address<'a> {
        address_line1: Leaf<'a> = "addressLine1",
        address_line2: Leaf<'a> = "addressLine2",
        city: Leaf<'a> = "city",
        state: Leaf<'a> = "state",
        postal_code: Leaf<'a> = "postalCode",
        country: Leaf<'a> = "country",
    }
}

impl<'a> Address<'a> {
    /// The field named as in the referral (`addressLine1`, …); absent for any other name.
    pub fn field(&self, name: &str) -> &Leaf<'a> {
        match name {
            "addressLine1" => &self.address_line1,
            "addressLine2" => &self.address_line2,
            "city" => &self.city,
            "state" => &self.state,
            "postalCode" => &self.postal_code,
            "country" => &self.country,
            _ => &Leaf::Absent,
        }
    }
}

record! {
    /// One member of `customerProfile.team`.
    Member<'a> {
        first_name: Leaf<'a> = "firstName",
        last_name: Leaf<'a> = "lastName",
        email: Leaf<'a> = "email",
        phone_number: Leaf<'a> = "phoneNumber",
        title: Leaf<'a> = "title",
    }
}

impl<'a> Member<'a> {
    /// The field named as in the referral (`firstName`, …); absent for any other name.
    pub fn field(&self, name: &str) -> &Leaf<'a> {
        match name {
            "firstName" => &self.first_name,
            "lastName" => &self.last_name,
            "email" => &self.email,
            "phoneNumber" => &self.phone_number,
            "title" => &self.title,
            _ => &Leaf::Absent,
        }
    }
}
